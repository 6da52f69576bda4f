//! Widgets for notebook cells: sliders, dropdowns, checkboxes, buttons, text, progress bars,
//! boxes, output areas, forms and live views — ipywidgets 8 models driven from Rust — and the
//! model's graph ([`graph_widget`], an anywidget view).
//!
//! A widget shows itself when it is a cell's last expression or is passed to
//! [`crate::display::display`]. Its `value()` is what the user last set in the browser. When
//! the user changes it, the kernel reruns the cells that use it (see the kernel's dataflow
//! module) — or, without compiling anything, the closures of [`live`] views that watch it.
//!
//! ```ignore
//! let scale = slider("scale", 0.001, 0.1, 0.02);
//! let zero_point = int_slider("zero point", -128, 127, 0);
//! hbox(&[&scale, &zero_point])
//! ```

mod graph;
mod kind;
pub mod kinds;
pub mod models;
pub mod registry;

use std::fmt;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::display::{MimeBundle, Rich};
pub use graph::{graph_widget, GraphView};
use models::State;
use registry::{registry, LiveView, WidgetModel};

/// Anything shown as a widget model in the browser.
pub trait Widget {
    /// The model (comm) id.
    fn model_id(&self) -> &str;
}

/// A number a widget accepts (`slider("x", 0, 10, 5)` as well as `slider("x", 0.0, 1.0, 0.5)`).
pub trait Number: Copy {
    fn to_f64(self) -> f64;
}

macro_rules! number {
    ($($t:ty),*) => {$(impl Number for $t { fn to_f64(self) -> f64 { self as f64 } })*};
}
number!(f64, f32, i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

fn check_range(kind: &str, description: &str, min: f64, max: f64) {
    assert!(
        min.is_finite() && max.is_finite() && min < max,
        "{kind} {description:?}: min ({min}) must be finite and below max ({max})"
    );
}

/// Opens a control of `kind` with `values` (its layout and style models first).
fn open_control(kind: &kinds::Kind, values: Value) -> Arc<WidgetModel> {
    let registry = registry();
    let mut layout = kinds::layout();
    if let Some(width) = kind.width {
        layout.insert("width".into(), width.into());
    }
    let layout = registry.open(layout, false, None);
    let Value::Object(mut values) = values else {
        unreachable!("control values are an object")
    };
    values.insert("layout".into(), models::reference(&layout.id));
    if let Some(style) = kind.style.and_then(kinds::of) {
        let style = registry.open(style.state(json!({})), false, None);
        values.insert("style".into(), models::reference(&style.id));
    }
    registry.open(kind.state(Value::Object(values)), true, None)
}

fn state1(key: &str, value: Value) -> State {
    let mut s = State::new();
    s.insert(key.into(), value);
    s
}

macro_rules! widget_type {
    ($(#[$doc:meta])* $name:ident) => {
        widget_type!(@core $(#[$doc])* $name);
        crate::evcxr_display_via_rich!($name);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                describe(&self.core, f)
            }
        }
    };
    (@core $(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            core: Arc<WidgetModel>,
        }

        impl Widget for $name {
            fn model_id(&self) -> &str {
                &self.core.id
            }
        }

        impl Rich for $name {
            fn mime_bundle(&self) -> MimeBundle {
                models::view_bundle(&self.core.id, &format!("{self:?}"))
            }
        }
    };
}

widget_type!(
    /// A slider over a range of real numbers; made by [`slider`].
    FloatSlider
);
widget_type!(
    /// A slider over a range of integers; made by [`int_slider`].
    IntSlider
);
widget_type!(
    /// A choice among labels; made by [`dropdown`].
    Dropdown
);
widget_type!(
    /// An on/off box; made by [`checkbox`].
    Checkbox
);
widget_type!(
    /// A button that counts its clicks; made by [`button`].
    Button
);
widget_type!(
    /// A line of text; made by [`text`].
    Text
);
widget_type!(
    /// A progress bar the cell moves; made by [`progress`].
    Progress
);
widget_type!(
    /// Widgets side by side or stacked; made by [`hbox`] and [`vbox`].
    WidgetBox
);
widget_type!(
    /// An area that shows outputs and can be redrawn later; made by [`output`].
    Output
);
widget_type!(
    /// Fields that apply together when the user presses the form's button; made by [`form`].
    Form
);
widget_type!(@core
    /// An output redrawn by a closure whenever one of its widgets changes; made by [`live`].
    /// It shows itself when made, so as a cell's last expression it adds nothing.
    Live
);

impl Live {
    /// Called by evcxr for a cell's last expression: the view is already shown.
    pub fn evcxr_display(&self) {}
}

/// A slider from `min` to `max` starting at `value` (clamped into the range, as ipywidgets
/// does), in 100 steps unless [`FloatSlider::step`] says otherwise.
///
/// Panics if `min` and `max` are not finite with `min < max`.
pub fn slider(
    description: &str,
    min: impl Number,
    max: impl Number,
    value: impl Number,
) -> FloatSlider {
    let (min, max, value) = (min.to_f64(), max.to_f64(), value.to_f64());
    check_range("slider", description, min, max);
    let value = if value.is_nan() {
        min
    } else {
        value.clamp(min, max)
    };
    let step = (max - min) / 100.0;
    let core = open_control(
        &kinds::FLOAT_SLIDER,
        json!({"description": description, "min": min, "max": max, "step": step, "value": value,
               "readout_format": models::readout_format(step)}),
    );
    FloatSlider { core }
}

impl FloatSlider {
    /// The value the user set (or the initial one).
    pub fn value(&self) -> f64 {
        self.core.get("value").as_f64().unwrap_or(f64::NAN)
    }
    /// Sets the step between values (and the number of decimals shown).
    ///
    /// Panics if `step` is not positive and finite.
    pub fn step(self, step: f64) -> Self {
        assert!(
            step.is_finite() && step > 0.0,
            "slider step must be positive and finite, got {step}"
        );
        let mut changes = state1("step", step.into());
        changes.insert("readout_format".into(), models::readout_format(step).into());
        self.core.set(changes);
        self
    }
    /// Moves the slider from the cell (clamped into its range).
    pub fn set(&self, value: f64) {
        let (min, max) = (self.min(), self.max());
        self.core.set(state1("value", value.clamp(min, max).into()));
    }
    /// The lower end of the range.
    pub fn min(&self) -> f64 {
        self.core.get("min").as_f64().unwrap_or(f64::NAN)
    }
    /// The upper end of the range.
    pub fn max(&self) -> f64 {
        self.core.get("max").as_f64().unwrap_or(f64::NAN)
    }
}

/// An integer slider from `min` to `max` starting at `value` (clamped into the range).
///
/// Panics unless `min < max`.
pub fn int_slider(description: &str, min: i64, max: i64, value: i64) -> IntSlider {
    assert!(
        min < max,
        "int_slider {description:?}: min ({min}) must be below max ({max})"
    );
    let value = value.clamp(min, max);
    let core = open_control(
        &kinds::INT_SLIDER,
        json!({"description": description, "min": min, "max": max, "value": value}),
    );
    IntSlider { core }
}

impl IntSlider {
    /// The value the user set (or the initial one).
    pub fn value(&self) -> i64 {
        self.core.get("value").as_i64().unwrap_or_default()
    }
    /// Moves the slider from the cell (clamped into its range).
    pub fn set(&self, value: i64) {
        let min = self.core.get("min").as_i64().unwrap_or(i64::MIN);
        let max = self.core.get("max").as_i64().unwrap_or(i64::MAX);
        self.core.set(state1("value", value.clamp(min, max).into()));
    }
}

/// A dropdown over `options` with `value` selected.
///
/// Panics if `options` is empty or does not contain `value`.
pub fn dropdown<S: AsRef<str>>(description: &str, options: &[S], value: &str) -> Dropdown {
    let labels: Vec<String> = options.iter().map(|o| o.as_ref().to_string()).collect();
    let index = labels.iter().position(|l| l == value).unwrap_or_else(|| {
        panic!("dropdown {description:?}: {value:?} is not one of the options {labels:?}")
    });
    let core = open_control(
        &kinds::DROPDOWN,
        json!({"description": description, "_options_labels": labels, "index": index}),
    );
    Dropdown { core }
}

impl Dropdown {
    /// The selected label.
    pub fn value(&self) -> String {
        let labels = self.options();
        let index = self.index();
        labels.get(index).cloned().unwrap_or_default()
    }
    /// The position of the selected label.
    pub fn index(&self) -> usize {
        self.core.get("index").as_u64().unwrap_or(0) as usize
    }
    /// All labels.
    pub fn options(&self) -> Vec<String> {
        serde_json::from_value(self.core.get("_options_labels")).unwrap_or_default()
    }
}

/// A checkbox.
pub fn checkbox(description: &str, value: bool) -> Checkbox {
    let core = open_control(
        &kinds::CHECKBOX,
        json!({"description": description, "value": value}),
    );
    Checkbox { core }
}

impl Checkbox {
    /// Whether it is ticked.
    pub fn value(&self) -> bool {
        self.core.get("value").as_bool().unwrap_or(false)
    }
}

/// A button. Cells that read [`Button::clicks`] rerun on every click.
pub fn button(description: &str) -> Button {
    let core = open_control(&kinds::BUTTON, json!({"description": description}));
    Button { core }
}

impl Button {
    /// How often it was clicked.
    pub fn clicks(&self) -> u64 {
        self.core.clicks()
    }
}

/// A text field.
pub fn text(description: &str, value: &str) -> Text {
    let core = open_control(
        &kinds::TEXT,
        json!({"description": description, "value": value}),
    );
    Text { core }
}

impl Text {
    /// The text the user typed (or the initial one).
    pub fn value(&self) -> String {
        self.core
            .get("value")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A progress bar from 0 to `max`, moved by [`Progress::set`] while the cell runs.
///
/// Panics unless `max` is positive and finite.
pub fn progress(description: &str, max: impl Number) -> Progress {
    let max = max.to_f64();
    check_range("progress", description, 0.0, max);
    let core = open_control(
        &kinds::PROGRESS,
        json!({"description": description, "max": max}),
    );
    Progress { core }
}

impl Progress {
    /// Moves the bar (clamped to 0..=max); the browser redraws it at once. Turns green at the
    /// end.
    pub fn set(&self, value: impl Number) {
        let max = self.max();
        let value = value.to_f64().clamp(0.0, max);
        let mut changes = state1("value", value.into());
        if value >= max {
            changes.insert("bar_style".into(), "success".into());
        }
        self.core.set(changes);
    }
    /// Where the bar is.
    pub fn value(&self) -> f64 {
        self.core.get("value").as_f64().unwrap_or(0.0)
    }
    /// Its end.
    pub fn max(&self) -> f64 {
        self.core.get("max").as_f64().unwrap_or(1.0)
    }
}

fn open_box(
    children: &[&dyn Widget],
    horizontal: bool,
    form: Option<crate::runtime::protocol::Form>,
) -> Arc<WidgetModel> {
    let registry = registry();
    let layout = registry.open(kinds::layout(), false, None);
    let kind = if horizontal {
        &kinds::HBOX
    } else {
        &kinds::VBOX
    };
    let children: Vec<Value> = children
        .iter()
        .map(|c| models::reference(c.model_id()))
        .collect();
    let state = kind.state(json!({"layout": models::reference(&layout.id), "children": children}));
    registry.open(state, true, form)
}

/// Widgets side by side.
pub fn hbox(children: &[&dyn Widget]) -> WidgetBox {
    WidgetBox {
        core: open_box(children, true, None),
    }
}

/// Widgets stacked.
pub fn vbox(children: &[&dyn Widget]) -> WidgetBox {
    WidgetBox {
        core: open_box(children, false, None),
    }
}

/// An empty output area.
pub fn output() -> Output {
    let registry = registry();
    let layout = registry.open(kinds::layout(), false, None);
    Output {
        core: registry.open(kinds::output(&layout.id, Vec::new()), false, None),
    }
}

/// The nbformat output that shows `value`.
fn display_output(value: &MimeBundle) -> Value {
    json!({"output_type": "display_data", "data": value, "metadata": {}})
}

impl Output {
    /// Replaces what the area shows with `value`.
    pub fn set<T: Rich + ?Sized>(&self, value: &T) {
        self.set_outputs(vec![display_output(&value.mime_bundle())]);
    }
    /// Adds `value` below what the area shows.
    pub fn display<T: Rich + ?Sized>(&self, value: &T) {
        let mut outputs = self.outputs();
        outputs.push(display_output(&value.mime_bundle()));
        self.set_outputs(outputs);
    }
    /// Empties the area.
    pub fn clear(&self) {
        self.set_outputs(Vec::new());
    }
    /// The nbformat outputs shown.
    pub fn outputs(&self) -> Vec<Value> {
        self.core
            .get("outputs")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
    fn set_outputs(&self, outputs: Vec<Value>) {
        self.core.set(state1("outputs", Value::Array(outputs)));
    }
}

/// Fields that apply together: the browser keeps the user's changes to them until the form's
/// button is pressed, then the cells that use any of them rerun once.
pub fn form(fields: &[&dyn Widget], submit_label: &str) -> Form {
    let submit = button(submit_label);
    submit.core.set(state1("button_style", "primary".into()));
    let mut children: Vec<&dyn Widget> = fields.to_vec();
    children.push(&submit);
    let members = fields.iter().map(|f| f.model_id().to_string()).collect();
    let form = crate::runtime::protocol::Form {
        members,
        submit: submit.core.id.clone(),
    };
    Form {
        core: open_box(&children, false, Some(form)),
    }
}

/// A view that reruns `view` in the runtime — nothing is compiled — whenever one of `on`
/// changes in the browser, and shows its result in place. It is shown at once, where it is
/// made. Use it for fast feedback; cells that read the same widgets still rerun as usual.
///
/// ```ignore
/// let k = slider("scale factor", 0.5, 2.0, 1.0);
/// live(&[&k], move || format!("scale × {:.2}", k.value()))
/// ```
pub fn live<R, F>(on: &[&dyn Widget], view: F) -> Live
where
    R: Rich,
    F: Fn() -> R + Send + Sync + 'static,
{
    let area = output();
    let render = move || match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&view)) {
        Ok(value) => vec![display_output(&value.mime_bundle())],
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            vec![
                json!({"output_type": "error", "ename": "Panic", "evalue": text,
                            "traceback": [format!("live view panicked: {text}")]}),
            ]
        }
    };
    let view = Arc::new(LiveView {
        on: on.iter().map(|w| w.model_id().to_string()).collect(),
        output: area.core.clone(),
        render: Box::new(render),
    });
    view.redraw();
    registry().add_live(view);
    let live = Live { core: area.core };
    crate::display::display(&live);
    live
}

/// How many live views this runtime redraws.
pub fn live_view_count() -> usize {
    registry().live_count()
}

/// `FloatSlider(description="scale", value=1.0, …)`: the properties its kind shows.
fn describe(core: &WidgetModel, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let kind = core.kind();
    let mut parts = Vec::new();
    for p in kind.into_iter().flat_map(|k| k.props()).filter(|p| p.shown) {
        let v = core.get(p.name);
        if !v.is_null() {
            parts.push(format!("{}={v}", p.name));
        }
    }
    let name = core.model.trim_end_matches("Model");
    write!(f, "{name}({})", parts.join(", "))
}

/// Empty: evcxr's fallback for a last expression it cannot call `evcxr_display` on (e.g. one
/// that moves a variable) prints `Debug`, and the view is shown already.
impl fmt::Debug for Live {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
