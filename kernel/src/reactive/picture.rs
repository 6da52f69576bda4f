//! `:deps` as a picture: the notebook's cells in run order, top to bottom, each with the widgets
//! it makes at its left; an arc at the right for every cell that reads names another cell
//! defines, labelled with those names, from the definer to the reader. Arcs that carry a
//! widget's name (those a widget change reruns along) are drawn in the widgets' colour; a cell
//! that reruns when a widget changes has a border of that colour.

use std::collections::BTreeMap;

use qplay::display::escape_html;

use super::Graph;

const CELL_X: usize = 170;
const CELL_WIDTH: usize = 300;
const ROW: usize = 46;
const GAP: usize = 22;
const WIDGET_ROW: usize = 20;
const FONT: &str = "font-family=\"monospace\" font-size=\"12\"";
const WIDGET_COLOUR: &str = "#d9730d";
const EDGE_COLOUR: &str = "#6b7280";
/// The width of a letter of the 12 px monospace font, rounded up.
const LETTER: usize = 8;

/// `text` cut to `chars` characters (an ellipsis marks the cut).
fn cut(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let kept: String = text.chars().take(chars.saturating_sub(1)).collect();
    format!("{kept}…")
}

impl Graph {
    /// The graph as an SVG document (see the module docs).
    pub fn picture(&self) -> String {
        let mut nodes: Vec<(&String, &super::Node)> = self.cells.iter().collect();
        nodes.sort_by_key(|(_, n)| n.ran_at);
        let row_of: BTreeMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.as_str(), i))
            .collect();
        // Each row's top and height: a cell with many widgets gets a taller row.
        let mut tops = Vec::with_capacity(nodes.len());
        let mut heights = Vec::with_capacity(nodes.len());
        let mut y = 12;
        for (_, node) in &nodes {
            let widgets = node.widgets.iter().filter(|(_, n)| !n.is_empty()).count();
            let height = ROW.max(widgets * WIDGET_ROW + 8);
            tops.push(y);
            heights.push(height);
            y += height + GAP;
        }
        let middle = |row: usize| tops[row] + heights[row] / 2;
        let right = CELL_X + CELL_WIDTH;
        let mut body = String::new();
        let mut widest = right;
        // The labels placed so far: their left and right ends and their baseline.
        let mut labels: Vec<(usize, usize, usize)> = Vec::new();
        let mut lowest = 0;
        // Arcs first, so that the cells are drawn over their ends.
        for (key, node) in &nodes {
            let reader = row_of[key.as_str()];
            let mut by_definer: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            let sources = self.definitions.sources(key, &node.syntax);
            for (name, definer) in &sources {
                if let Some((definer, _)) = row_of.get_key_value(definer.as_str()) {
                    by_definer.entry(definer).or_default().push(name);
                }
            }
            for (definer, names) in by_definer {
                let from = row_of[definer];
                let bound_to_widget = self.cells[definer]
                    .widgets
                    .iter()
                    .any(|(_, bound)| names.iter().any(|n| bound.contains(*n)));
                let colour = if bound_to_widget {
                    WIDGET_COLOUR
                } else {
                    EDGE_COLOUR
                };
                let reach = 28 + 22 * from.abs_diff(reader);
                let (y0, y1) = (middle(from) - 6, middle(reader) + 6);
                let marker = if bound_to_widget { "widget" } else { "name" };
                body.push_str(&format!(
                    "<path class=\"edge\" d=\"M{right} {y0} C{x} {y0}, {x} {y1}, {right} {y1}\" \
                     fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" \
                     marker-end=\"url(#qplay-deps-{marker})\"/>",
                    x = right + reach * 4 / 3,
                ));
                let label = cut(&names.join(", "), 40);
                let x = right + reach + 4;
                let (x_end, mut label_y) = (x + LETTER * label.chars().count(), (y0 + y1) / 2 + 4);
                // Below the labels it would overlap (arcs of equal height share a middle).
                while labels
                    .iter()
                    .any(|&(a, b, y)| label_y.abs_diff(y) < 14 && x < b && a < x_end)
                {
                    label_y += 14;
                }
                labels.push((x, x_end, label_y));
                body.push_str(&format!(
                    "<text class=\"names\" x=\"{x}\" y=\"{label_y}\" {FONT} fill=\"{colour}\">{}</text>",
                    escape_html(&label)
                ));
                widest = widest.max(x_end);
                lowest = lowest.max(label_y + 8);
            }
        }
        for (row, (key, node)) in nodes.iter().enumerate() {
            let (top, height) = (tops[row], heights[row]);
            let reruns = self.is_reactive(key, &node.syntax);
            let border = if reruns { WIDGET_COLOUR } else { "#9ca3af" };
            let first_line = node
                .code
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let defines: Vec<&str> = node.syntax.defines.iter().map(String::as_str).collect();
            body.push_str(&format!(
                "<g class=\"cell\"><rect x=\"{CELL_X}\" y=\"{top}\" width=\"{CELL_WIDTH}\" \
                 height=\"{height}\" rx=\"4\" fill=\"#f9fafb\" stroke=\"{border}\" \
                 stroke-width=\"{}\"/><text x=\"{}\" y=\"{}\" {FONT}>{}</text>\
                 <text x=\"{}\" y=\"{}\" {FONT} fill=\"#6b7280\">{}</text></g>",
                if reruns { 2 } else { 1 },
                CELL_X + 8,
                top + 18,
                escape_html(&cut(&format!("#{} {}", row + 1, first_line.trim()), 38)),
                CELL_X + 8,
                top + 35,
                escape_html(&cut(&format!("defines {}", defines.join(", ")), 38)),
            ));
            let bound = node.widgets.iter().filter(|(_, n)| !n.is_empty());
            for (i, (_, names)) in bound.enumerate() {
                let y = top + 4 + i * WIDGET_ROW;
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                body.push_str(&format!(
                    "<g class=\"widget\"><rect x=\"10\" y=\"{y}\" width=\"140\" height=\"16\" \
                     rx=\"8\" fill=\"#fff7ed\" stroke=\"{WIDGET_COLOUR}\"/><text x=\"18\" \
                     y=\"{}\" {FONT} fill=\"{WIDGET_COLOUR}\">{}</text><line x1=\"150\" \
                     y1=\"{}\" x2=\"{CELL_X}\" y2=\"{}\" stroke=\"{WIDGET_COLOUR}\"/></g>",
                    y + 12,
                    escape_html(&cut(&names.join("/"), 17)),
                    y + 8,
                    y + 8,
                ));
            }
        }
        y = y.max(lowest);
        if nodes.is_empty() {
            body.push_str(&format!(
                "<text x=\"10\" y=\"24\" {FONT}>no cells have run yet</text>"
            ));
            y = 40;
        }
        let markers: String = [("name", EDGE_COLOUR), ("widget", WIDGET_COLOUR)]
            .iter()
            .map(|(id, colour)| {
                format!(
                    "<marker id=\"qplay-deps-{id}\" viewBox=\"0 0 8 8\" refX=\"7\" refY=\"4\" \
                     markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path \
                     d=\"M0 0 L8 4 L0 8 z\" fill=\"{colour}\"/></marker>"
                )
            })
            .collect();
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"qplay-deps\" width=\"{w}\" \
             height=\"{y}\" viewBox=\"0 0 {w} {y}\"><defs>{markers}</defs>{body}</svg>",
            w = widest + 12,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactive::graph::graph;

    #[test]
    fn the_picture_has_every_cell_each_edge_with_its_names_and_the_widgets() {
        let mut g = graph(&[
            ("load", "let model = load(\"resnet8_int8\")?;"),
            ("knob", "let bits = int_slider(\"bits\", 2, 8, 8);"),
            (
                "use",
                "let v = model.with_bits(bits.value()); let s = v.sqnr();",
            ),
            ("show", "s"),
        ]);
        g.get_mut("knob").unwrap().widgets = vec![("w1".into(), ["bits".to_string()].into())];
        let svg = g.picture();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("class=\"cell\"").count(), 4);
        assert_eq!(svg.matches("class=\"widget\"").count(), 1);
        // load → use (model), knob → use (bits), use → show (s): three arcs, each named.
        assert_eq!(svg.matches("class=\"edge\"").count(), 3);
        for names in [">model<", ">bits<", ">s<"] {
            assert!(svg.contains(names), "{names} labels an edge");
        }
        // The widget's arc, and the cells a widget change reruns, are in the widgets' colour.
        assert_eq!(
            svg.matches(&format!("stroke=\"{WIDGET_COLOUR}\" stroke-width=\"1.5\""))
                .count(),
            1
        );
        assert_eq!(
            svg.matches(&format!("stroke=\"{WIDGET_COLOUR}\" stroke-width=\"2\""))
                .count(),
            2
        );
        assert!(svg.contains("#1 let model = load(&quot;resnet8_int8&quot;)?;"));
        assert!(Graph::default().picture().contains("no cells have run yet"));
    }

    /// The labels of arcs whose middles meet (1 → 2 and 0 → 3) do not overlap.
    #[test]
    fn labels_that_would_overlap_are_moved_apart() {
        let g = graph(&[
            ("load", "let model = 1;"),
            ("knob", "let threshold = slider(\"t\", 0.0, 1.0, 0.5);"),
            ("n", "let n = threshold.value();"),
            ("text", "let text = format!(\"{model} {n}\");"),
        ]);
        let svg = g.picture();
        let labels: Vec<(usize, usize, usize)> = svg
            .split("<text class=\"names\" x=\"")
            .skip(1)
            .map(|rest| {
                let number = |s: &str| s.split('"').next().unwrap().parse::<usize>().unwrap();
                let x = number(rest);
                let y = number(rest.split("y=\"").nth(1).unwrap());
                let name = rest.split('>').nth(1).unwrap().split('<').next().unwrap();
                (x, x + LETTER * name.chars().count(), y)
            })
            .collect();
        assert_eq!(labels.len(), 3);
        for (i, a) in labels.iter().enumerate() {
            for b in &labels[i + 1..] {
                let apart = a.2.abs_diff(b.2) >= 14 || a.1 <= b.0 || b.1 <= a.0;
                assert!(apart, "labels {a:?} and {b:?} overlap");
            }
        }
    }
}
