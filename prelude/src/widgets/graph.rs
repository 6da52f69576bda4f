//! The model's graph as a live widget ([`graph_widget`]): an anywidget model (kind
//! [`kinds::GRAPH_VIEW`]) whose ES module (`graph.js`, inline in `_esm`) draws the graph once —
//! laid out and drawn by [`crate::quant::graph`] — and recolours it in the browser: an overlay
//! dropdown above it, the legend, each tensor's values on hover, and a click on a node that sets
//! `selected` (and the dropdown it [`GraphView::links`], so that the cells reading that dropdown
//! rerun as if the user had picked the tensor there).
//!
//! Every overlay's colours and tooltips are sent at once ([`GraphView::show`]), so choosing
//! another overlay in the browser recolours without asking the kernel. Outputs read without a
//! widget manager (nbconvert's HTML and markdown, GitHub) show the same picture as SVG: a
//! second output, beside the view's (a bundle would not do: nbconvert's HTML export shows a
//! bundle's widget view and nothing else). Its HTML is marked `qplay-graph-twin`, which the
//! view's stylesheet hides, so a page where the view is drawn (JupyterLab, Voilà) shows the
//! live graph once.

use std::fmt;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};

use super::registry::WidgetModel;
use super::{kinds, models, open_control, Dropdown, Widget};
use crate::display::{MimeBundle, Rich};
use crate::quant::graph::{svg, Figure, Graph, Overlay};
use crate::quant::QuantModel;

/// The view's ES module and its styles.
const ESM: &str = include_str!("graph.js");
const CSS: &str = include_str!("graph.css");

/// The graph and its overlays as shown (for the picture saved beside the widget view).
struct Shown {
    graph: Graph,
    overlays: Vec<Overlay>,
}

/// A model's graph in the browser, recoloured by the overlay the user picks; made by
/// [`graph_widget`].
#[derive(Clone)]
pub struct GraphView {
    pub(super) core: Arc<WidgetModel>,
    shown: Arc<Mutex<Shown>>,
}

/// A live view of `g`: the graph drawn once, uncoloured until [`GraphView::show`] sends
/// overlays (it starts on `xmodel_err`).
///
/// ```ignore
/// let view = graph_widget(&graph(&m)?).links(&layer);   // a click selects in `layer`
/// view.show(&v, &[Overlay::xmodel_err(&errors), Overlay::scale_change(&v)])?
/// ```
pub fn graph_widget(g: &Graph) -> GraphView {
    let plain = g.with(Overlay::none());
    let (body, _) = svg::body(&plain);
    let core = open_control(
        &kinds::GRAPH_VIEW,
        json!({"_css": CSS, "_esm": ESM, "model": g.model, "svg": body,
               "tensors": g.tensors(), "overlays": overlays_state(&plain, &[])}),
    );
    GraphView {
        core,
        shown: Arc::new(Mutex::new(Shown {
            graph: plain,
            overlays: Vec::new(),
        })),
    }
}

/// Figure name → what the view needs to show it: its place in the dropdown, the legend, each
/// tensor's fill and text colour, and every tooltip in the order of the drawing's `data-tip`s.
/// "none" is always there.
fn overlays_state(g: &Graph, overlays: &[Overlay]) -> Value {
    let mut out = Map::new();
    let none = Overlay::none();
    for o in std::iter::once(&none).chain(overlays) {
        let coloured = g.with(o.clone());
        let (_, tips) = svg::body(&coloured);
        let paint: Map<String, Value> = g
            .tensors()
            .into_iter()
            .filter_map(|t| {
                let (fill, ink) = svg::paint(&coloured, &t)?;
                Some((t, json!([fill, ink])))
            })
            .collect();
        let rank = Figure::ALL.iter().position(|f| *f == o.figure);
        let caption = match &o.unavailable {
            Some(why) => format!("{} ({why})", o.figure.caption()),
            None => o.figure.caption().to_string(),
        };
        out.insert(
            o.figure.name().into(),
            json!({"rank": rank, "caption": caption,
                   "legend": svg::legend_only(&coloured), "paint": paint, "tips": tips}),
        );
    }
    Value::Object(out)
}

impl GraphView {
    /// Clicks also select the clicked tensor in `dropdown` (when it is one of its options), and
    /// the node of the dropdown's choice is outlined.
    pub fn links(self, dropdown: &Dropdown) -> Self {
        let mut changes = models::State::new();
        changes.insert("links".into(), models::reference(dropdown.model_id()));
        self.core.set(changes);
        self
    }

    /// Sends `overlays` (at most one per figure; an [`Overlay::unavailable`] one is listed with
    /// its reason) with version `v`'s quantization parameters in the tooltips; the browser
    /// recolours in place. Returns the view, to show it.
    pub fn show(&self, v: &QuantModel, overlays: &[Overlay]) -> Result<GraphView> {
        for (i, o) in overlays.iter().enumerate() {
            if o.figure == Figure::None {
                bail!("graph view: the overlay `none` is always there; pass only figures");
            }
            if overlays[..i].iter().any(|p| p.figure == o.figure) {
                bail!("graph view: two overlays of `{}`", o.figure.name());
            }
        }
        let mut shown = lock(&self.shown);
        shown.graph = shown.graph.for_version(v);
        shown.overlays = overlays.to_vec();
        let mut changes = models::State::new();
        changes.insert("model".into(), shown.graph.model.clone().into());
        changes.insert(
            "overlays".into(),
            overlays_state(&shown.graph, &shown.overlays),
        );
        drop(shown);
        self.core.set(changes);
        Ok(self.clone())
    }

    /// The tensor of the node the user clicked last (or kept from the cell's previous run).
    pub fn selected(&self) -> Option<String> {
        self.core.get("selected").as_str().map(str::to_string)
    }

    /// The overlay the user chose (`xmodel_err` at first).
    pub fn overlay(&self) -> String {
        self.core
            .get("overlay")
            .as_str()
            .unwrap_or("xmodel_err")
            .to_string()
    }

    /// The picture the browser shows now, as a [`Graph`] coloured by the chosen overlay.
    pub fn picture(&self) -> Graph {
        let shown = lock(&self.shown);
        let figure = Figure::parse(&self.overlay()).unwrap_or(Figure::None);
        let overlay = shown
            .overlays
            .iter()
            .find(|o| o.figure == figure)
            .cloned()
            .unwrap_or_else(Overlay::none);
        shown.graph.with(overlay)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Widget for GraphView {
    fn model_id(&self) -> &str {
        &self.core.id
    }
}

/// The widget view; then, as an output of its own, the same picture as SVG (inline HTML,
/// marked as the view's twin, and `image/svg+xml`) with the graph's text summary, for viewers
/// without a widget manager.
impl Rich for GraphView {
    fn mime_bundle(&self) -> MimeBundle {
        let model = lock(&self.shown).graph.model.clone();
        models::view_bundle(
            &self.core.id,
            &format!("graph of {model} (live view; its picture is the next output)"),
        )
    }

    fn companions(&self) -> Vec<MimeBundle> {
        let mut b = self.picture().mime_bundle();
        if let Some(Value::String(html)) = b.get("text/html") {
            let twin = format!("<div class=\"qplay-graph-twin\">{html}</div>");
            b.insert("text/html".into(), twin.into());
        }
        vec![b]
    }
}

crate::evcxr_display_via_rich!(GraphView);

impl fmt::Debug for GraphView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::describe(&self.core, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;

    fn resnet8() -> QuantModel {
        crate::quant::workbench("resnet8_int8").unwrap()
    }

    #[test]
    fn a_graph_view_sends_its_drawing_once_and_recolours_by_state() {
        let m = resnet8();
        let g = crate::quant::graph(&m).unwrap();
        let view = graph_widget(&g);
        let state = |k: &str| view.core.get(k);
        assert_eq!(state("_model_name"), "AnyModel");
        assert_eq!(state("_view_name"), "AnyView");
        assert!(state("_esm").as_str().unwrap().contains("export default"));
        let body = state("svg").as_str().unwrap().to_string();
        let tips = body.matches("data-tip=").count();
        assert_eq!(
            state("tensors").as_array().unwrap().len(),
            g.tensors().len()
        );
        assert_eq!(state("overlays").as_object().unwrap().len(), 1, "none only");
        let act = (m.quant_params().rows.iter())
            .filter(|r| r.role == crate::quant::Role::Activation)
            .nth(3)
            .unwrap()
            .tensor
            .clone();
        let v = m
            .with_scale(&act, m.param(&act).unwrap().scales[0] * 4.0)
            .unwrap();
        view.show(&v, &[Overlay::scale_change(&v)]).unwrap();
        assert_eq!(
            state("svg").as_str().unwrap(),
            body,
            "the drawing is not sent again"
        );
        let o = state("overlays");
        let scale = &o["scale change"];
        assert_eq!(scale["tips"].as_array().unwrap().len(), tips);
        assert_eq!(
            scale["paint"][&act][0],
            Overlay::scale_change(&v).colour(4.0)
        );
        assert!(scale["legend"].as_str().unwrap().starts_with("<svg"));
        let tip = scale["tips"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .find(|t| t.contains(&format!("writes {act}")))
            .unwrap();
        assert!(tip.contains("scale change: scale × 4"), "{tip}");
        // Shown without a widget manager: the picture of the chosen overlay.
        let mut changes = models::State::new();
        changes.insert("overlay".into(), "scale change".into());
        crate::widgets::registry::registry().apply(
            &[crate::runtime::protocol::Change {
                comm_id: view.model_id().into(),
                state: changes,
            }],
            &[],
        );
        let b = view.mime_bundle();
        assert!(b.contains_key(models::VIEW_MIME));
        assert!(!b.contains_key("text/html") && !b.contains_key("image/svg+xml"));
        let [twin] = view.companions().try_into().unwrap();
        let html = twin["text/html"].as_str().unwrap();
        assert!(html.starts_with("<div class=\"qplay-graph-twin\">"));
        assert!(html.contains("scale against the original"));
        assert!(twin["image/svg+xml"].is_string());
        assert!(twin["text/plain"].as_str().unwrap().starts_with("graph of"));
        assert!(CSS.contains(".qplay-graph-twin"), "the view hides its twin");
        let e = view
            .show(&v, &[Overlay::scale_change(&v), Overlay::scale_change(&v)])
            .unwrap_err();
        assert!(
            e.to_string().contains("two overlays of `scale change`"),
            "{e}"
        );
    }

    /// A TorchScript version: its own graph, its parameters in the tooltips, the scale change
    /// coloured, and the figures it cannot give listed with their reason.
    #[test]
    fn a_torch_graph_view_lists_what_it_cannot_show() {
        let m = crate::quant::workbench("resnet8_int8_torch").unwrap();
        let view = graph_widget(&crate::quant::graph(&m).unwrap());
        let v = m
            .with_scale("conv2d_4", m.param("conv2d_4").unwrap().scales[0] * 2.0)
            .unwrap();
        let mut overlays = vec![Overlay::scale_change(&v)];
        overlays.extend(Overlay::unavailable_for(&v));
        view.show(&v, &overlays).unwrap();
        let o = view.core.get("overlays");
        assert_eq!(view.core.get("model"), v.name());
        assert_eq!(
            o["scale change"]["paint"]["conv2d_4"][0],
            Overlay::scale_change(&v).colour(2.0)
        );
        let x = &o["xmodel_err"];
        assert!(x["paint"].as_object().unwrap().is_empty());
        assert!(x["caption"].as_str().unwrap().contains("fused kernels"));
        assert!(x["legend"].as_str().unwrap().contains("not available"));
        assert!(o["saturation"]["caption"]
            .as_str()
            .unwrap()
            .contains("not what was clipped"));
        let tips = o["scale change"]["tips"].as_array().unwrap();
        assert!(tips
            .iter()
            .any(|t| t.as_str().unwrap().contains("writes conv2d_4: uint8 scale")));
    }
}
