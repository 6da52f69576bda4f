//! What the evcxr patch tests share: reading an evaluation's phases and plain-text value.

use evcxr::EvalOutputs;

pub fn phases(outputs: &EvalOutputs) -> Vec<&str> {
    outputs.phases.iter().map(|p| p.name.as_str()).collect()
}

pub fn text(outputs: &EvalOutputs) -> &str {
    outputs
        .content_by_mime_type
        .get("text/plain")
        .map(String::as_str)
        .unwrap_or_default()
}
