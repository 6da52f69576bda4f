//! The states of ipywidgets 8 models, as the JupyterLab widget manager expects them.
//!
//! Each function returns the full initial state of one model (`@jupyter-widgets/controls` and
//! `@jupyter-widgets/base` 2.0.0, `@jupyter-widgets/output` 1.0.0), with the same keys and
//! defaults that ipywidgets 8.1 sends, so that a notebook saved by qplay renders wherever
//! ipywidgets' own do. The kernel uses [`output`] for the output areas of reactive cells.

use serde_json::{json, Map, Value};

/// The widget protocol version sent in every `comm_open`'s metadata.
pub const PROTOCOL_VERSION: &str = "2.1.0";
/// The comm target of widget models.
pub const TARGET: &str = "jupyter.widget";
/// The comm target the frontend opens to ask for all states after a page reload.
pub const CONTROL_TARGET: &str = "jupyter.widget.control";
/// The MIME type of a widget view.
pub const VIEW_MIME: &str = "application/vnd.jupyter.widget-view+json";

const CONTROLS: &str = "@jupyter-widgets/controls";
const BASE: &str = "@jupyter-widgets/base";
const OUTPUT: &str = "@jupyter-widgets/output";
const V2: &str = "2.0.0";

/// A model's state.
pub use crate::protocol::State;

/// A reference to another model inside a state (`"IPY_MODEL_<id>"`).
pub fn reference(model_id: &str) -> Value {
    Value::String(format!("IPY_MODEL_{model_id}"))
}

fn header(model: &str, module: &str, version: &str, view: Option<(&str, &str)>) -> State {
    let mut s = State::new();
    s.insert("_model_module".into(), module.into());
    s.insert("_model_module_version".into(), version.into());
    s.insert("_model_name".into(), model.into());
    s.insert("_view_count".into(), Value::Null);
    let (view_module, view_name) = match view {
        Some((m, n)) => (m, Value::from(n)),
        None => (module, Value::Null),
    };
    s.insert("_view_module".into(), view_module.into());
    s.insert("_view_module_version".into(), version.into());
    s.insert("_view_name".into(), view_name);
    s
}

fn extend(mut s: State, more: Value) -> State {
    if let Value::Object(more) = more {
        s.extend(more);
    }
    s
}

/// `LayoutModel`: every layout property unset.
pub fn layout() -> State {
    let mut s = header("LayoutModel", BASE, V2, Some((BASE, "LayoutView")));
    for key in [
        "align_content",
        "align_items",
        "align_self",
        "border_bottom",
        "border_left",
        "border_right",
        "border_top",
        "bottom",
        "display",
        "flex",
        "flex_flow",
        "grid_area",
        "grid_auto_columns",
        "grid_auto_flow",
        "grid_auto_rows",
        "grid_column",
        "grid_gap",
        "grid_row",
        "grid_template_areas",
        "grid_template_columns",
        "grid_template_rows",
        "height",
        "justify_content",
        "justify_items",
        "left",
        "margin",
        "max_height",
        "max_width",
        "min_height",
        "min_width",
        "object_fit",
        "object_position",
        "order",
        "overflow",
        "padding",
        "right",
        "top",
        "visibility",
        "width",
    ] {
        s.insert(key.into(), Value::Null);
    }
    s
}

/// The style model that goes with a control (`SliderStyleModel`, `DescriptionStyleModel`, …).
/// Descriptions take the width they need (`"initial"`), not ipywidgets' fixed default, which
/// cuts longer ones off.
pub fn style(model: &str) -> State {
    let s = header(model, CONTROLS, V2, Some((BASE, "StyleView")));
    let more = match model {
        "SliderStyleModel" => json!({"description_width": "initial", "handle_color": null}),
        "CheckboxStyleModel" => json!({"background": null, "description_width": "initial"}),
        "ButtonStyleModel" => json!({
            "button_color": null, "font_family": null, "font_size": null, "font_style": null,
            "font_variant": null, "font_weight": null, "text_color": null,
            "text_decoration": null,
        }),
        "TextStyleModel" => json!({
            "background": null, "description_width": "initial", "font_size": null, "text_color": null,
        }),
        "ProgressStyleModel" => json!({"bar_color": null, "description_width": "initial"}),
        _ => json!({"description_width": "initial"}),
    };
    extend(s, more)
}

/// The style model name for a control model.
pub fn style_model_of(model: &str) -> Option<&'static str> {
    Some(match model {
        "FloatSliderModel" | "IntSliderModel" => "SliderStyleModel",
        "CheckboxModel" => "CheckboxStyleModel",
        "ButtonModel" => "ButtonStyleModel",
        "TextModel" => "TextStyleModel",
        "FloatProgressModel" => "ProgressStyleModel",
        "DropdownModel" => "DescriptionStyleModel",
        _ => return None,
    })
}

fn control(model: &str, view: &str, layout: &str, style: Option<&str>, more: Value) -> State {
    let mut s = header(model, CONTROLS, V2, Some((CONTROLS, view)));
    s.insert("_dom_classes".into(), json!([]));
    s.insert("layout".into(), reference(layout));
    if let Some(style) = style {
        s.insert("style".into(), reference(style));
    }
    s.insert("tabbable".into(), Value::Null);
    s.insert("tooltip".into(), Value::Null);
    extend(s, more)
}

/// Decimal places that show a value of `step`'s resolution (`".3f"` for 0.001).
pub fn readout_format(step: f64) -> String {
    let mut digits = 0;
    let mut x = step.abs();
    while digits < 8 && x > 0.0 && (x - x.round()).abs() > 1e-9 * x.max(1.0) {
        x *= 10.0;
        digits += 1;
    }
    format!(".{digits}f")
}

/// `FloatSliderModel`.
pub fn float_slider(
    layout: &str,
    style: &str,
    description: &str,
    (min, max, step, value): (f64, f64, f64, f64),
) -> State {
    control(
        "FloatSliderModel",
        "FloatSliderView",
        layout,
        Some(style),
        json!({
            "behavior": "drag-tap", "continuous_update": true, "description": description,
            "description_allow_html": false, "disabled": false, "max": max, "min": min,
            "orientation": "horizontal", "readout": true,
            "readout_format": readout_format(step), "step": step, "value": value,
        }),
    )
}

/// `IntSliderModel`.
pub fn int_slider(
    layout: &str,
    style: &str,
    description: &str,
    (min, max, value): (i64, i64, i64),
) -> State {
    control(
        "IntSliderModel",
        "IntSliderView",
        layout,
        Some(style),
        json!({
            "behavior": "drag-tap", "continuous_update": true, "description": description,
            "description_allow_html": false, "disabled": false, "max": max, "min": min,
            "orientation": "horizontal", "readout": true, "readout_format": "d", "step": 1,
            "value": value,
        }),
    )
}

/// `DropdownModel` (the frontend knows labels and an index; the kernel maps them back).
pub fn dropdown(
    layout: &str,
    style: &str,
    description: &str,
    labels: &[String],
    index: usize,
) -> State {
    control(
        "DropdownModel",
        "DropdownView",
        layout,
        Some(style),
        json!({
            "_options_labels": labels, "description": description,
            "description_allow_html": false, "disabled": false, "index": index,
        }),
    )
}

/// `CheckboxModel`.
pub fn checkbox(layout: &str, style: &str, description: &str, value: bool) -> State {
    control(
        "CheckboxModel",
        "CheckboxView",
        layout,
        Some(style),
        json!({
            "description": description, "description_allow_html": false, "disabled": false,
            "indent": true, "value": value,
        }),
    )
}

/// `ButtonModel`.
pub fn button(layout: &str, style: &str, description: &str, button_style: &str) -> State {
    control(
        "ButtonModel",
        "ButtonView",
        layout,
        Some(style),
        json!({
            "button_style": button_style, "description": description, "disabled": false,
            "icon": "",
        }),
    )
}

/// `TextModel`.
pub fn text(layout: &str, style: &str, description: &str, value: &str) -> State {
    control(
        "TextModel",
        "TextView",
        layout,
        Some(style),
        json!({
            "continuous_update": true, "description": description,
            "description_allow_html": false, "disabled": false, "placeholder": "\u{200b}",
            "value": value,
        }),
    )
}

/// `FloatProgressModel`.
pub fn progress(layout: &str, style: &str, description: &str, max: f64) -> State {
    control(
        "FloatProgressModel",
        "ProgressView",
        layout,
        Some(style),
        json!({
            "bar_style": "", "description": description, "description_allow_html": false,
            "max": max, "min": 0.0, "orientation": "horizontal", "value": 0.0,
        }),
    )
}

/// `HBoxModel` or `VBoxModel` (`horizontal` picks).
pub fn boxed(layout: &str, children: &[&str], horizontal: bool) -> State {
    let (model, view) = if horizontal {
        ("HBoxModel", "HBoxView")
    } else {
        ("VBoxModel", "VBoxView")
    };
    let children: Vec<Value> = children.iter().map(|c| reference(c)).collect();
    control(
        model,
        view,
        layout,
        None,
        json!({"box_style": "", "children": children}),
    )
}

/// `OutputModel` with the given nbformat outputs.
pub fn output(layout: &str, outputs: Vec<Value>) -> State {
    let mut s = header("OutputModel", OUTPUT, "1.0.0", Some((OUTPUT, "OutputView")));
    s.insert("_dom_classes".into(), json!([]));
    s.insert("layout".into(), reference(layout));
    s.insert("msg_id".into(), "".into());
    s.insert("outputs".into(), Value::Array(outputs));
    s.insert("tabbable".into(), Value::Null);
    s.insert("tooltip".into(), Value::Null);
    s
}

/// The `display_data` bundle that shows a model, with a text fallback.
pub fn view_bundle(model_id: &str, text: &str) -> Map<String, Value> {
    let mut b = Map::new();
    b.insert(
        VIEW_MIME.into(),
        json!({"version_major": 2, "version_minor": 0, "model_id": model_id}),
    );
    b.insert("text/plain".into(), text.into());
    b
}

/// A fresh model id: 32 hex digits, like ipywidgets' uuid4().hex.
pub fn new_model_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos ^ (std::process::id() as u128) << 64).to_le_bytes();
    }
    crate::data::to_hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readout_format_follows_the_step() {
        assert_eq!(readout_format(0.1), ".1f");
        assert_eq!(readout_format(0.001), ".3f");
        assert_eq!(readout_format(0.25), ".2f");
        assert_eq!(readout_format(1.0), ".0f");
    }

    #[test]
    fn model_ids_are_32_hex_digits_and_unique() {
        let a = new_model_id();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_model_id());
    }

    #[test]
    fn slider_state_has_ipywidgets_keys() {
        let s = float_slider("L", "S", "scale", (0.0, 2.0, 0.01, 1.0));
        for key in [
            "_model_module",
            "_model_module_version",
            "_model_name",
            "_view_count",
            "_view_module",
            "_view_module_version",
            "_view_name",
            "behavior",
            "continuous_update",
            "description",
            "layout",
            "max",
            "min",
            "readout_format",
            "step",
            "style",
            "value",
            "_dom_classes",
            "tabbable",
            "tooltip",
        ] {
            assert!(s.contains_key(key), "{key}");
        }
        assert_eq!(s["layout"], "IPY_MODEL_L");
        assert_eq!(s["_view_module_version"], "2.0.0");
    }
}
