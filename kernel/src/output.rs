//! Where a cell's outputs go, and how a cell fails: shared by the engine (which produces
//! outputs), the widgets (whose output areas receive them) and the session.

use std::sync::Mutex;

use qplay::display::escape_html;
use qplay::runtime::protocol::MimeBundle;
use qplay::widgets::models;
use qplay_kernel::jupyter::backend::Iopub;
use serde_json::Value;

/// Where a running cell's outputs go (the kernel publishes them on IOPub).
pub trait OutputSink: Send + Sync {
    /// Text on `stdout` or `stderr`.
    fn stream(&self, name: &str, text: &str);
    /// A rich output; `update` replaces the output shown earlier under `display_id`.
    fn display(&self, data: MimeBundle, display_id: Option<String>, update: bool);
    /// Clears the cell's outputs (`wait`: when the next output arrives).
    fn clear_output(&self, wait: bool);
    /// A comm message (`comm_open`, `comm_msg`, `comm_close`) of a widget the cell made.
    fn comm(&self, msg_type: &str, content: Value, metadata: Value);
    /// The final value of a wrapped cell (a compiled cell's comes back from evcxr instead).
    fn result(&self, data: MimeBundle) {
        self.display(data, None, false);
    }
}

/// Whether a cell's value has nothing to show: a cell ending in a block, loop or call that
/// returns `()`, or in a value that showed itself already (a live view).
pub fn is_unit(bundle: &MimeBundle) -> bool {
    bundle.is_empty()
        || (bundle.len() == 1
            && matches!(
                bundle.get("text/plain").and_then(Value::as_str),
                Some("()" | "")
            ))
}

/// Why a cell failed, in the shape of a Jupyter `error` message.
#[derive(Debug, Clone)]
pub struct CellError {
    /// Short kind of error (`CompilationError`, `Panic`, `Interrupted`, …).
    pub ename: String,
    /// One-line description.
    pub evalue: String,
    /// Lines to show, ANSI colours allowed.
    pub traceback: Vec<String>,
}

/// An [`OutputSink`] that keeps what it is given (for start-up, where nothing is shown).
#[derive(Default)]
pub struct Collect(Mutex<String>);

impl Collect {
    /// Everything streamed so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl OutputSink for Collect {
    fn stream(&self, _name: &str, text: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(text);
    }
    fn display(&self, _data: MimeBundle, _id: Option<String>, _update: bool) {}
    fn clear_output(&self, _wait: bool) {}
    fn comm(&self, _msg_type: &str, _content: Value, _metadata: Value) {}
}

/// Publishes a running cell's outputs on IOPub, with the execute request as parent.
pub struct IopubSink(pub Iopub);

impl OutputSink for IopubSink {
    fn stream(&self, name: &str, text: &str) {
        self.0.stream(name, text);
    }
    fn display(&self, data: MimeBundle, display_id: Option<String>, update: bool) {
        match (update, display_id) {
            (true, Some(id)) => self.0.update_display_data(data, MimeBundle::new(), &id),
            (_, id) => self.0.display_data(data, MimeBundle::new(), id.as_deref()),
        }
    }
    fn clear_output(&self, wait: bool) {
        self.0.clear_output(wait);
    }
    fn comm(&self, msg_type: &str, content: Value, metadata: Value) {
        self.0.send(msg_type, content, metadata);
    }
}

/// What a reactive cell's output area shows, as a MIME bundle of its own: the area's widget view
/// (live in JupyterLab and Voilà) with the same outputs as HTML and as text beside it, for
/// everything that cannot run widgets — a saved notebook on GitHub or nbviewer, `nbconvert --to
/// markdown` or `--to html` offline. Frontends with a widget manager show the view.
pub fn area_bundle(model_id: &str, outputs: &[Value]) -> MimeBundle {
    let mut text = String::new();
    let mut html = String::from("<div class=\"qplay-area\">");
    for o in outputs {
        match o["output_type"].as_str() {
            Some("stream") => {
                let t = o["text"].as_str().unwrap_or_default();
                text.push_str(t);
                html.push_str(&format!("<pre>{}</pre>", escape_html(t)));
            }
            Some("error") => {
                let line = format!(
                    "{}: {}",
                    o["ename"].as_str().unwrap_or_default(),
                    o["evalue"].as_str().unwrap_or_default()
                );
                text.push_str(&line);
                text.push('\n');
                html.push_str(&format!(
                    "<pre class=\"qplay-error\">{}</pre>",
                    escape_html(&line)
                ));
            }
            _ => {
                let data = &o["data"];
                let plain = data["text/plain"].as_str().unwrap_or_default();
                if !plain.is_empty() {
                    text.push_str(plain);
                    text.push('\n');
                }
                if let Some(h) = data["text/html"].as_str() {
                    html.push_str(h);
                } else if let Some(svg) = data["image/svg+xml"].as_str() {
                    html.push_str(svg);
                } else if let Some(png) = data["image/png"].as_str() {
                    html.push_str(&format!(
                        "<img src=\"data:image/png;base64,{}\">",
                        png.trim()
                    ));
                } else if !plain.is_empty() {
                    html.push_str(&format!("<pre>{}</pre>", escape_html(plain)));
                }
            }
        }
    }
    html.push_str("</div>");
    let mut bundle = models::view_bundle(model_id, text.trim_end());
    bundle.insert("text/html".into(), html.into());
    bundle
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_area_stands_on_its_own_as_html_and_text() {
        let outputs = [
            json!({"output_type": "stream", "name": "stdout", "text": "k = 1 < 2\n"}),
            json!({"output_type": "display_data", "metadata": {},
                   "data": {"text/html": "<table>t</table>", "text/plain": "table"}}),
            json!({"output_type": "display_data", "metadata": {},
                   "data": {"image/svg+xml": "<svg/>", "text/plain": "<SVG image>"}}),
            json!({"output_type": "error", "ename": "Panic", "evalue": "boom", "traceback": []}),
        ];
        let b = area_bundle("m1", &outputs);
        let html = b["text/html"].as_str().unwrap();
        assert!(html.contains("<pre>k = 1 &lt; 2\n</pre>"), "{html}");
        assert!(
            html.contains("<table>t</table>") && html.contains("<svg/>"),
            "{html}"
        );
        assert!(html.contains("Panic: boom"), "{html}");
        assert_eq!(
            b["text/plain"],
            "k = 1 < 2\ntable\n<SVG image>\nPanic: boom"
        );
        assert_eq!(b[models::VIEW_MIME]["model_id"], "m1");
    }
}
