//! Rich output from notebook cells.
//!
//! Two ways out of a cell, both through the runtime process's stdout:
//! - [`display`] shows a value *now*, as its own output, and returns a [`DisplayHandle`] whose
//!   [`DisplayHandle::update`] replaces that output in place later. Each call prints one line,
//!   a [`crate::runtime::protocol::FromRuntime`] message, which the kernel turns into a Jupyter
//!   `display_data` or `update_display_data` message.
//! - A cell's last expression is shown by evcxr's convention: if its type has an
//!   `evcxr_display` method, evcxr calls it and collects the `EVCXR_BEGIN_CONTENT <mime>` …
//!   `EVCXR_END_CONTENT` blocks it prints into the cell's `execute_result`. qplay's rich types
//!   implement it through [`print_evcxr_values`] (a value and its companions, each an
//!   output of its own).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::runtime::protocol::FromRuntime;
pub use crate::runtime::protocol::MimeBundle;

/// A value that can show itself in a notebook. `text/plain` should always be present, as the
/// fallback for front ends (and nbconvert formats) that cannot render the richer types.
pub trait Rich {
    /// The representations of this value, by MIME type.
    fn mime_bundle(&self) -> MimeBundle;

    /// Outputs shown right after this one, each an output of its own (each with `text/plain`).
    /// For what one bundle cannot carry: a viewer shows one MIME type of a bundle, and
    /// nbconvert's HTML export puts a widget view above every other type, so a widget's static
    /// picture goes out beside its view, not inside its bundle.
    fn companions(&self) -> Vec<MimeBundle> {
        Vec::new()
    }
}

/// An output shown by [`display`], which can be replaced in place (with its companions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayHandle {
    id: String,
    /// The display ids of the value's [`Rich::companions`], in order.
    companions: Vec<String>,
}

impl DisplayHandle {
    /// The Jupyter `display_id` of this output.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Replaces the output (wherever it is shown) with `value`, and its companions with
    /// `value`'s (as many as were shown).
    pub fn update<T: Rich + ?Sized>(&self, value: &T) {
        emit(&FromRuntime::Update {
            data: value.mime_bundle(),
            display_id: self.id.clone(),
        });
        for (id, data) in self.companions.iter().zip(value.companions()) {
            emit(&FromRuntime::Update {
                data,
                display_id: id.clone(),
            });
        }
    }
}

fn new_display_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "qplay-{}-{:x}-{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Shows `value` now, as its own output of the running cell (then each of its
/// [`Rich::companions`] as an output of its own).
pub fn display<T: Rich + ?Sized>(value: &T) -> DisplayHandle {
    let companions = value.companions();
    let handle = DisplayHandle {
        id: new_display_id(),
        companions: companions.iter().map(|_| new_display_id()).collect(),
    };
    emit(&FromRuntime::Display {
        data: value.mime_bundle(),
        display_id: handle.id.clone(),
    });
    for (data, id) in companions.into_iter().zip(&handle.companions) {
        emit(&FromRuntime::Display {
            data,
            display_id: id.clone(),
        });
    }
    handle
}

/// Clears the running cell's outputs; with `wait`, only when the next output arrives (no
/// flicker for outputs redrawn in a loop).
pub fn clear_output(wait: bool) {
    emit(&FromRuntime::Clear { wait });
}

/// Writes one message line for the kernel on stdout, in order with the cell's other output:
/// evcxr's engine reads it during a compiled cell, the link during an answer to a request
/// (see [`crate::runtime::link`]).
pub(crate) fn emit(message: &FromRuntime) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", message.line());
    let _ = out.flush();
}

/// Prints a bundle in evcxr's convention, its `text/plain` first.
pub fn print_evcxr_blocks(bundle: &MimeBundle) {
    let mut out = std::io::stdout().lock();
    let plain = bundle.iter().filter(|(mime, _)| *mime == "text/plain");
    let others = bundle.iter().filter(|(mime, _)| *mime != "text/plain");
    for (mime, value) in plain.chain(others) {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = write!(
            out,
            "EVCXR_BEGIN_CONTENT {mime}\n{text}\nEVCXR_END_CONTENT\n"
        );
    }
    let _ = out.flush();
}

/// Prints `value` and its [`Rich::companions`] in evcxr's convention, for a type's
/// `evcxr_display` method. The kernel's relay starts a new output where a MIME type repeats,
/// and every bundle starts with `text/plain`, so each bundle is an output of its own.
pub fn print_evcxr_values<T: Rich + ?Sized>(value: &T) {
    print_evcxr_blocks(&value.mime_bundle());
    for bundle in value.companions() {
        print_evcxr_blocks(&bundle);
    }
}

/// Gives every `Debug` value an `evcxr_display` method that prints it as `text/plain`, the way
/// evcxr's own fallback does. evcxr shows a cell's last value by compiling a call to
/// `evcxr_display`, and when that does not compile, compiles the whole cell again with
/// `Debug` — a second compile for every cell that ends in a plain value. With this trait in
/// scope (the prelude imports it) the first compile succeeds. Types with an inherent
/// `evcxr_display` (qplay's rich types, plotters' charts) keep theirs: inherent methods win.
pub trait DebugDisplay {
    /// Prints `{:?}` in evcxr's content-block convention.
    fn evcxr_display(&self);
}

impl<T: std::fmt::Debug + ?Sized> DebugDisplay for T {
    fn evcxr_display(&self) {
        // Only the formatting is generic: it is compiled into the cell, the rest is not.
        print_text_plain(format_args!("{self:?}"));
    }
}

/// Prints one `text/plain` content block.
#[inline(never)]
fn print_text_plain(text: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = write!(
        out,
        "EVCXR_BEGIN_CONTENT text/plain\n{text}\nEVCXR_END_CONTENT\n"
    );
    let _ = out.flush();
}

/// Escapes text for HTML.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Ready-made HTML, shown as is (with its tags stripped as the text fallback).
#[derive(Debug, Clone)]
pub struct Html(pub String);

/// An SVG image.
#[derive(Debug, Clone)]
pub struct Svg(pub String);

impl Rich for Html {
    fn mime_bundle(&self) -> MimeBundle {
        let mut b = MimeBundle::new();
        b.insert("text/html".into(), self.0.clone().into());
        b.insert("text/plain".into(), strip_tags(&self.0).into());
        b
    }
}

impl Rich for Svg {
    /// The SVG as `image/svg+xml`, and inline in `text/html`, which JupyterLab prefers: it shows
    /// `image/svg+xml` as an `<img>` at the SVG's own pixel size, cut off at the edge of a
    /// narrow output area, while an inline `<svg>` shrinks with the area (JupyterLab's
    /// stylesheet, and the style added here for other HTML views, give it `max-width: 100%;
    /// height: auto`; its `viewBox` keeps the proportions).
    fn mime_bundle(&self) -> MimeBundle {
        let mut b = MimeBundle::new();
        b.insert("image/svg+xml".into(), self.0.clone().into());
        b.insert("text/html".into(), inline_svg(&self.0).into());
        b.insert("text/plain".into(), "<SVG image>".into());
        b
    }
}

/// `svg` for inline use in HTML: without an XML declaration, and with the root element scaled
/// down to its container's width when that is narrower.
fn inline_svg(svg: &str) -> String {
    let svg = match svg.trim_start().strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map_or(svg, |(_, body)| body),
        None => svg,
    };
    let root_tag = |at: usize| &svg[at..svg[at..].find('>').map_or(svg.len(), |end| at + end)];
    match svg.find("<svg") {
        Some(at) if root_tag(at).contains("viewBox") => {
            let (head, tail) = svg.split_at(at + "<svg".len());
            format!(r#"{head} style="max-width:100%;height:auto"{tail}"#)
        }
        _ => svg.to_string(),
    }
}

impl Rich for str {
    fn mime_bundle(&self) -> MimeBundle {
        let mut b = MimeBundle::new();
        b.insert("text/plain".into(), self.into());
        b
    }
}

impl Rich for String {
    fn mime_bundle(&self) -> MimeBundle {
        self.as_str().mime_bundle()
    }
}

/// A fallible result shows its value, or its error as text.
impl<T: Rich, E: std::fmt::Display> Rich for Result<T, E> {
    fn mime_bundle(&self) -> MimeBundle {
        match self {
            Ok(value) => value.mime_bundle(),
            Err(e) => format!("error: {e}").mime_bundle(),
        }
    }
}

macro_rules! rich_via_display {
    ($($t:ty),*) => {$(
        impl Rich for $t {
            fn mime_bundle(&self) -> MimeBundle {
                self.to_string().mime_bundle()
            }
        }
    )*};
}
rich_via_display!(f64, f32, i32, i64, u32, u64, usize, bool);

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// A progress bar shown as its own output and redrawn in place as work advances.
///
/// ```ignore
/// let bar = ProgressBar::new("full evaluation", test.len());
/// let options = EvalOptions { progress: Some(&|done, _| bar.set(done)), ..Default::default() };
/// ```
pub struct ProgressBar {
    label: String,
    total: usize,
    handle: DisplayHandle,
    last: std::sync::Mutex<(usize, std::time::Instant)>,
}

impl ProgressBar {
    /// Shows an empty bar now.
    pub fn new(label: &str, total: usize) -> ProgressBar {
        let bar = ProgressBar {
            label: label.to_string(),
            total,
            handle: DisplayHandle {
                id: new_display_id(),
                companions: Vec::new(),
            },
            last: std::sync::Mutex::new((0, std::time::Instant::now())),
        };
        emit(&FromRuntime::Display {
            data: bar.bundle(0),
            display_id: bar.handle.id.clone(),
        });
        bar
    }

    fn bundle(&self, done: usize) -> MimeBundle {
        let total = self.total.max(1);
        let pct = 100.0 * done.min(total) as f64 / total as f64;
        let mut b = MimeBundle::new();
        b.insert(
            "text/html".into(),
            format!(
                "<div class=\"qplay-progress\"><progress value=\"{done}\" max=\"{total}\" \
                 style=\"width: 24em\"></progress> {} — {done}/{} ({pct:.0} %)</div>",
                escape_html(&self.label),
                self.total
            )
            .into(),
        );
        b.insert(
            "text/plain".into(),
            format!("{}: {done}/{} ({pct:.0} %)", self.label, self.total).into(),
        );
        b
    }

    /// Moves the bar to `done`. Redraws at most ten times a second, and always at the end.
    pub fn set(&self, done: usize) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let finished = done >= self.total;
        if done == last.0 || (!finished && last.1.elapsed().as_millis() < 100) {
            return;
        }
        *last = (done, std::time::Instant::now());
        emit(&FromRuntime::Update {
            data: self.bundle(done),
            display_id: self.handle.id.clone(),
        });
    }
}

/// Implements evcxr's `evcxr_display` for rich types, so that they show richly as a cell's
/// last expression.
#[macro_export]
macro_rules! evcxr_display_via_rich {
    ($($t:ty),* $(,)?) => {$(
        impl $t {
            /// Called by evcxr when this value is a cell's last expression.
            pub fn evcxr_display(&self) {
                $crate::display::print_evcxr_values(self);
            }
        }
    )*};
}

/// JSON data: a tree in JupyterLab (`application/json`), pretty text elsewhere. Build it with
/// `json!` (re-exported from serde_json); `make sweep` collects a notebook's last one.
#[derive(Debug, Clone)]
pub struct Json(pub Value);

impl Rich for Json {
    fn mime_bundle(&self) -> MimeBundle {
        let mut b = MimeBundle::new();
        b.insert("application/json".into(), self.0.clone());
        b.insert(
            "text/plain".into(),
            serde_json::to_string_pretty(&self.0)
                .unwrap_or_default()
                .into(),
        );
        b
    }
}

evcxr_display_via_rich!(Html, Svg, Json);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svgs_are_also_inline_html_that_scales_down() {
        let svg = Svg(r#"<?xml version="1.0"?><svg width="760" height="400" viewBox="0 0 760 400"><rect/></svg>"#.into());
        let b = svg.mime_bundle();
        assert_eq!(b["image/svg+xml"], svg.0.as_str());
        assert_eq!(
            b["text/html"],
            r#"<svg style="max-width:100%;height:auto" width="760" height="400" viewBox="0 0 760 400"><rect/></svg>"#
        );
        // Without a viewBox a scaled width would not scale the drawing: left as it is.
        let plain = Svg("<svg width='1'></svg>".into()).mime_bundle();
        assert_eq!(plain["text/html"], "<svg width='1'></svg>");
        let nested = Svg("<svg width='1'><pattern viewBox='0 0 1 1'/></svg>".into()).mime_bundle();
        assert_eq!(
            nested["text/html"],
            "<svg width='1'><pattern viewBox='0 0 1 1'/></svg>"
        );
    }

    #[test]
    fn display_ids_are_unique() {
        assert_ne!(new_display_id(), new_display_id());
    }

    #[test]
    fn html_has_a_text_fallback() {
        let b = Html("<p>accuracy <b>75 %</b></p>".into()).mime_bundle();
        assert_eq!(b["text/plain"], "accuracy 75 %");
    }
}
