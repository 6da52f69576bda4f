//! The widget protocol's constants and the pieces of model states that are not one kind's
//! (references, readout formats, view bundles, model ids); the kinds themselves are declared in
//! [`super::kinds`].

use serde_json::{json, Map, Value};

/// The widget protocol version sent in every `comm_open`'s metadata.
pub const PROTOCOL_VERSION: &str = "2.1.0";
/// The comm target of widget models.
pub const TARGET: &str = "jupyter.widget";
/// The comm target the frontend opens to ask for all states after a page reload.
pub const CONTROL_TARGET: &str = "jupyter.widget.control";
/// The MIME type of a widget view.
pub const VIEW_MIME: &str = "application/vnd.jupyter.widget-view+json";

/// A model's state.
pub use crate::runtime::protocol::State;

/// A reference to another model inside a state (`"IPY_MODEL_<id>"`).
pub fn reference(model_id: &str) -> Value {
    Value::String(format!("IPY_MODEL_{model_id}"))
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
}
