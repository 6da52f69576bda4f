//! The graph as an SVG document: a legend with the overlay's colour scale on top, then edges
//! (curves through their bend points, a dtype pill where a QDQ pair was folded) and boxes (name,
//! op, badges), each in a group with a `<title>` — the tooltip a browser shows on hover — and
//! `data-node` / `data-tensor` attributes a live view can attach clicks to.

use std::fmt::Write;

use super::layout::{BADGE_W, BOX_H, BOX_W, MARGIN};
use super::overlay::{rgb, Figure};
use super::{Graph, NodeKind};
use crate::display::escape_html;
use crate::quant::{fmt_num, Role};

/// Height of the legend above the graph.
const LEGEND_H: f64 = 84.0;
const FONT: &str = "font-family=\"sans-serif\"";
const PLAIN: &str = "#ffffff";
const LINE: &str = "#555555";
/// The narrowest drawing (room for the legend).
const MIN_W: f64 = 460.0;

/// The SVG source of `g`: the legend above the graph.
pub fn draw(g: &Graph) -> String {
    let l = &g.layout;
    let width = l.width.max(MIN_W);
    let mut s = open(width, l.height + LEGEND_H);
    legend(g, width, &mut s);
    let _ = write!(s, "<g transform=\"translate(0,{LEGEND_H})\">");
    parts(g, &mut s, &mut Vec::new());
    s += "</g></svg>";
    s
}

/// The graph alone (no legend), as a live view draws it once, with every tooltip in the order
/// of the `data-tip` numbers its groups carry.
pub fn body(g: &Graph) -> (String, Vec<String>) {
    let mut s = open(g.layout.width, g.layout.height);
    let mut tips = Vec::new();
    parts(g, &mut s, &mut tips);
    s += "</svg>";
    (s, tips)
}

/// The legend alone, as its own SVG document.
pub fn legend_only(g: &Graph) -> String {
    let width = g.layout.width.max(MIN_W);
    let mut s = open(width, LEGEND_H);
    legend(g, width, &mut s);
    s += "</svg>";
    s
}

/// The fill and the text colour of `tensor` under `g`'s overlay; `None` when it is uncoloured.
pub fn paint(g: &Graph, tensor: &str) -> Option<(String, &'static str)> {
    let colour = fill(g, tensor);
    (colour != PLAIN).then(|| {
        let ink = ink(&colour);
        (colour, ink)
    })
}

/// An SVG document's opening: size, white background, the arrow head.
fn open(width: f64, height: f64) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" \
         viewBox=\"0 0 {w:.0} {h:.0}\" class=\"qplay-graph\" {FONT}>\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\
         <defs><marker id=\"qplay-arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" \
         markerWidth=\"9\" markerHeight=\"9\" markerUnits=\"userSpaceOnUse\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" \
         fill=\"{LINE}\"/></marker></defs>",
        w = width,
        h = height
    )
}

/// Edges, then boxes with their badges; each group numbered (`data-tip`) in the order its
/// tooltip is pushed onto `tips`.
fn parts(g: &Graph, s: &mut String, tips: &mut Vec<String>) {
    let l = &g.layout;
    for (e, edge) in g.edges.iter().enumerate() {
        let colour = fill(g, &edge.tensor);
        let pts = &l.routes[e];
        let mut d = format!("M{:.1},{:.1}", pts[0].0, pts[0].1);
        for w in pts.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            let ym = (y0 + y1) / 2.0;
            let _ = write!(d, " C{x0:.1},{ym:.1} {x1:.1},{ym:.1} {x1:.1},{y1:.1}");
        }
        let stroke = if colour == PLAIN {
            LINE
        } else {
            colour.as_str()
        };
        let width = if colour == PLAIN { 1.4 } else { 3.0 };
        let title = edge_title(g, e);
        let _ = write!(
            s,
            "<g class=\"qplay-edge\" data-tensor=\"{t}\" data-tip=\"{tip}\"><title>{title}</title>\
             <path class=\"qplay-line\" d=\"{d}\" fill=\"none\" stroke=\"{LINE}\" \
             stroke-width=\"{w2:.1}\" marker-end=\"url(#qplay-arrow)\"/>\
             <path class=\"qplay-paint\" d=\"{d}\" fill=\"none\" stroke=\"{stroke}\" \
             stroke-width=\"{width:.1}\"/>",
            t = escape_html(&edge.tensor),
            tip = tips.len(),
            title = escape_html(&title),
            w2 = width + 1.2,
        );
        tips.push(title);
        if let Some(dtype) = &edge.dtype {
            // The pill sits halfway down the first segment, past where fanned-out edges part.
            let (x0, y0) = pts[0];
            let (x1, y1) = pts[1];
            let (x, y) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
            let _ = write!(
                s,
                "<rect class=\"qplay-paint-fill\" x=\"{:.1}\" y=\"{:.1}\" width=\"36\" \
                 height=\"14\" rx=\"7\" fill=\"{colour}\" stroke=\"{LINE}\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\" \
                 fill=\"{}\">{}</text>",
                x - 18.0,
                y - 7.0,
                y + 3.0,
                ink(&colour),
                escape_html(dtype)
            );
        }
        *s += "</g>";
    }
    for (i, node) in g.nodes.iter().enumerate() {
        let (x, y) = l.pos[i];
        let tensor = g.output_tensor(i).unwrap_or("");
        let colour = fill(g, tensor);
        let title = node_title(g, i);
        let (w, rx) = match node.kind {
            NodeKind::Op => (BOX_W, 6.0),
            _ => (BOX_W * 0.7, BOX_H / 2.0),
        };
        let _ = write!(
            s,
            "<g class=\"qplay-node\" data-node=\"{n}\" data-tensor=\"{t}\" data-tip=\"{tip}\" \
             style=\"cursor:pointer\"><title>{title}</title>\
             <rect class=\"qplay-paint-fill\" x=\"{:.1}\" y=\"{:.1}\" width=\"{w:.0}\" \
             height=\"{BOX_H:.0}\" rx=\"{rx:.0}\" fill=\"{colour}\" stroke=\"#333333\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"12\" font-weight=\"bold\" \
             text-anchor=\"middle\" fill=\"{ink}\">{n}</text>\
             <text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" \
             fill=\"{ink}\">{op}</text>",
            x - w / 2.0,
            y - BOX_H / 2.0,
            y - 3.0,
            y + 11.0,
            n = escape_html(&node.name),
            t = escape_html(tensor),
            tip = tips.len(),
            title = escape_html(&title),
            ink = ink(&colour),
            op = escape_html(&node.op),
        );
        tips.push(title);
        for (k, b) in node.badges.iter().enumerate() {
            let bx = x + w / 2.0 + 3.0;
            let by = y - BOX_H / 2.0 + k as f64 * 17.0;
            let letter = if b.role == Role::Bias { "B" } else { "W" };
            let colour = fill(g, &b.tensor);
            let title = badge_title(g, b);
            let _ = write!(
                s,
                "<g class=\"qplay-badge\" data-tensor=\"{t}\" data-tip=\"{tip}\"><title>{title}</title>\
                 <rect class=\"qplay-paint-fill\" x=\"{bx:.1}\" y=\"{by:.1}\" \
                 width=\"{bw:.0}\" height=\"15\" rx=\"3\" fill=\"{colour}\" stroke=\"#888888\"/>\
                 <text x=\"{tx:.1}\" y=\"{ty:.1}\" font-size=\"9\" text-anchor=\"middle\" \
                 fill=\"{ink}\">{letter} {short}</text></g>",
                t = escape_html(&b.tensor),
                tip = tips.len(),
                title = escape_html(&title),
                bw = BADGE_W - 6.0,
                tx = bx + (BADGE_W - 6.0) / 2.0,
                ty = by + 11.0,
                ink = ink(&colour),
                short = escape_html(&short_dtype(&b.dtype)),
            );
            tips.push(title);
        }
        *s += "</g>";
    }
}

/// `int8` → `i8`, `uint8` → `u8`, `float` → `f32`.
fn short_dtype(dtype: &str) -> String {
    match dtype {
        "float" => "f32".into(),
        d => d.replacen("uint", "u", 1).replacen("int", "i", 1),
    }
}

/// The overlay's colour for `tensor`, white when it has no value.
fn fill(g: &Graph, tensor: &str) -> String {
    match g.overlay.value(tensor) {
        Some(v) if g.overlay.figure != Figure::None => g.overlay.colour(v),
        _ => PLAIN.into(),
    }
}

/// Black or white, whichever reads better on `bg`.
fn ink(bg: &str) -> &'static str {
    let [r, g, b] = rgb(bg);
    if 0.299 * r + 0.587 * g + 0.114 * b < 128.0 {
        "#ffffff"
    } else {
        "#111111"
    }
}

/// The legend: the model, the figure, the colour scale with its ends, the note.
fn legend(g: &Graph, width: f64, s: &mut String) {
    let o = &g.overlay;
    let _ = write!(
        s,
        "<text x=\"{MARGIN}\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        escape_html(&g.model)
    );
    if o.figure == Figure::None {
        let _ = write!(
            s,
            "<text x=\"{MARGIN}\" y=\"40\" font-size=\"11\" fill=\"#555555\">Quantize/dequantize \
             folded into their edges (pill: dtype); W/B: weight and bias badges. No overlay.</text>"
        );
        return;
    }
    if let Some(reason) = &o.unavailable {
        // Two lines (SVG text does not wrap): what, then why.
        let (what, why) = reason.split_once(": ").unwrap_or((reason, ""));
        let _ = write!(
            s,
            "<text x=\"{MARGIN}\" y=\"36\" font-size=\"11\">{cap}</text>\
             <text x=\"{MARGIN}\" y=\"54\" font-size=\"10\" fill=\"#b71c1c\">{what}</text>\
             <text x=\"{MARGIN}\" y=\"68\" font-size=\"10\" fill=\"#b71c1c\">{why}</text>",
            cap = escape_html(o.figure.caption()),
            what = escape_html(what),
            why = escape_html(why),
        );
        return;
    }
    let stops = o.stops();
    // Inline SVGs share one id space in a notebook's page: the id names the stops, so that
    // every graph finds its own colours (or equal ones) under it.
    let id = format!("qplay-scale-{}", stops.join("").replace('#', ""));
    let _ = write!(s, "<defs><linearGradient id=\"{id}\">");
    for (k, c) in stops.iter().enumerate() {
        let _ = write!(
            s,
            "<stop offset=\"{:.2}\" stop-color=\"{c}\"/>",
            k as f64 / (stops.len() - 1) as f64
        );
    }
    let bar_w = (width - 2.0 * MARGIN).min(320.0);
    let (lo, hi) = o.range();
    // Left end of the bar is the better end (for SQNR, the high value).
    let (left, right) = match o.figure {
        Figure::QdqErr | Figure::XmodelErr => (hi, lo),
        _ => (lo, hi),
    };
    let label = |v: f64| match o.figure {
        Figure::ScaleChange => format!("× {}", fmt_num(v)),
        _ => format!("{v:.1}"),
    };
    let _ = write!(
        s,
        "</linearGradient></defs>\
         <text x=\"{MARGIN}\" y=\"36\" font-size=\"11\">{cap}</text>\
         <rect x=\"{MARGIN}\" y=\"42\" width=\"{bar_w:.0}\" height=\"10\" \
         fill=\"url(#{id})\" stroke=\"#888888\"/>\
         <text x=\"{MARGIN}\" y=\"62\" font-size=\"10\">{l}</text>\
         <text x=\"{r:.0}\" y=\"62\" font-size=\"10\" text-anchor=\"end\">{rt}</text>\
         <text x=\"{MARGIN}\" y=\"76\" font-size=\"10\" fill=\"#555555\">{note}</text>",
        cap = escape_html(o.figure.caption()),
        l = label(left),
        r = MARGIN + bar_w,
        rt = label(right),
        note = escape_html(&o.note),
    );
}

/// What a tensor's tooltip says: its quantization and the overlay's value.
fn tensor_lines(g: &Graph, tensor: &str) -> String {
    let mut out = match g.param(tensor) {
        Some(p) => format!(
            "{tensor}: {} scale {} zero point {}",
            p.dtype,
            p.scales
                .iter()
                .map(|&v| fmt_num(v as f64))
                .collect::<Vec<_>>()
                .join(", "),
            p.zero_points
                .iter()
                .map(|z| z.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => format!("{tensor}: float"),
    };
    if let Some(v) = g.overlay.value(tensor) {
        let _ = write!(
            out,
            "\n{}: {}",
            g.overlay.figure.name(),
            g.overlay.figure.format(v)
        );
    }
    if let Some(r) = g.overlay.remarks.get(tensor) {
        let _ = write!(out, "\n({r})");
    }
    out
}

fn node_title(g: &Graph, i: usize) -> String {
    let n = &g.nodes[i];
    let mut out = format!("{} ({})", n.name, n.op);
    if let Some(t) = g.output_tensor(i) {
        let _ = write!(out, "\nwrites {}", tensor_lines(g, t));
    }
    for b in &n.badges {
        let line = if b.dtype == "float" {
            format!("{}: float", b.tensor)
        } else {
            tensor_lines(g, &b.tensor)
        };
        let _ = write!(out, "\n{} {line}", b.role);
    }
    out
}

/// A weight's or bias's tooltip: its quantization (or `float`) and the overlay's value.
fn badge_title(g: &Graph, b: &super::Badge) -> String {
    if b.dtype == "float" {
        format!("{} {}: float", b.role, b.tensor)
    } else {
        format!("{} {}", b.role, tensor_lines(g, &b.tensor))
    }
}

fn edge_title(g: &Graph, e: usize) -> String {
    let edge = &g.edges[e];
    format!(
        "{} → {}\n{}",
        g.nodes[edge.from].name,
        g.nodes[edge.to].name,
        tensor_lines(g, &edge.tensor)
    )
}
