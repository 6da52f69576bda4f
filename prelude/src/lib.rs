//! qplay — the library every notebook cell sees.
//!
//! It loads the bundled ResNet-8 models (ONNX through ONNX Runtime, TorchScript through libtorch)
//! behind one [`model::Model`] trait, caches them in a process-wide [`registry`], reads CIFAR-10
//! ([`data`]) and evaluates models on it ([`eval`]). Notebook cells start with
//! `use qplay::prelude::*;` already in scope.

pub mod charts;
pub mod data;
pub mod display;
pub mod eval;
pub mod model;
pub mod onnx;
pub mod paths;
pub mod quant;
pub mod registry;
pub mod runtime;
pub mod store;
pub mod torch;
pub mod widgets;

/// For cells: `json!` and JSON values without a `:dep` of their own.
pub use serde_json;

/// Everything a notebook cell needs, imported by the kernel before the first cell runs.
pub mod prelude {
    pub use crate::charts::{
        confusion_chart, histogram, per_class_chart, sensitivity_chart, sqnr_chart, sweep_chart,
        tensor_histogram,
    };
    pub use crate::data::{Bundled, Dataset, Split, CLASS_NAMES};
    /// In scope for its method only (one compile per cell; see the trait).
    pub use crate::display::DebugDisplay as _;
    pub use crate::display::{
        clear_output, display, DisplayHandle, Html, Json, ProgressBar, Rich, Svg,
    };
    pub use crate::eval::{evaluate, quick, EvalOptions, Evaluation};
    pub use crate::model::{Framework, Model, ModelHandle, ModelInfo};
    pub use crate::quant::calibrate::{
        calibrate_version, equalize, mixed_precision, mixed_precision_chart, LearnedRounding,
        MixedOptions, MixedPrecision,
    };
    pub use crate::quant::sqnr::layer_errors;
    pub use crate::quant::{
        adaround, adaround_with, agreement, calibrate, compare_models, graph, repair, repair_chart,
        sensitivity, sweep, workbench, AdaRound, AdaRoundOptions, Agreement, CalibOptions, Capture,
        Comparison, Diff, Figure, Graph, Knob, LayerErrors, Method, Overlay, ParamSweep, QDtype,
        QuantModel, QuantParam, QuantParams, Repair, RepairOptions, Role, Sensitivity, Weights,
    };
    pub use crate::registry::{available, load, load_count};
    pub use crate::runtime::interrupt::{check as check_interrupt, Interrupted};
    pub use crate::widgets::{
        button, checkbox, dropdown, form, graph_widget, hbox, int_slider, live, output, progress,
        slider, text, vbox, Button, Checkbox, Dropdown, FloatSlider, Form, GraphView, IntSlider,
        Live, Output, Progress, Text, Widget, WidgetBox,
    };
    pub use serde_json::json;
}
