//! Every widget kind qplay makes, declared once: its ipywidgets model and view, each property
//! with its type and default, the rules that tie properties together, which properties a
//! rerun of the cell keeps, and the prelude functions that create it.
//!
//! From this table come the initial states ([`Kind::state`]), the kernel's check of browser
//! updates ([`Kind::check_update`]), the values kept when a cell runs again ([`Kind::kept`])
//! and the constructor names the kernel's dataflow counts ([`constructors`]); `kind.rs` holds
//! the declaration's types and what is derived from one.
//! The defaults are ipywidgets 8.1's, so that a notebook saved by qplay renders wherever
//! ipywidgets' own do.

use super::kind::prop;
pub use super::kind::{Initial, Kind, Prop, Rule, Type};
use super::models::reference;
use crate::runtime::protocol::State;

const CONTROLS: &str = "@jupyter-widgets/controls";
const BASE: &str = "@jupyter-widgets/base";
const OUTPUT: &str = "@jupyter-widgets/output";

use Initial::{Empty, Given, Unset};
use Type::*;

const DESCRIPTION: Prop = prop("description", Text, Initial::Text("")).shown();
const DESCRIPTION_HTML: Prop = prop("description_allow_html", Bool, Initial::Bool(false));
const DISABLED: Prop = prop("disabled", Bool, Initial::Bool(false));
const HORIZONTAL: Prop = prop("orientation", Text, Initial::Text("horizontal"));
const DESCRIPTION_WIDTH: Prop = prop("description_width", Text, Initial::Text("initial"));

const fn unset_text(name: &'static str) -> Prop {
    prop(name, Text, Unset)
}

const fn kind(model: &'static str, view: &'static str, own: &'static [Prop]) -> Kind {
    Kind {
        model,
        module: (CONTROLS, "2.0.0"),
        view: (CONTROLS, view),
        style: None,
        width: None,
        own,
        control: true,
        rules: &[],
        made_by: &[],
    }
}

const fn style_kind(model: &'static str, own: &'static [Prop]) -> Kind {
    Kind {
        view: (BASE, "StyleView"),
        control: false,
        ..kind(model, "", own)
    }
}

const BEHAVIOR: Prop = prop("behavior", Text, Initial::Text("drag-tap"));
const CONTINUOUS: Prop = prop("continuous_update", Bool, Initial::Bool(true));
const READOUT: Prop = prop("readout", Bool, Initial::Bool(true));

/// A slider kind: its value stays in `[min, max]`, its step is positive.
const fn slider_kind(
    model: &'static str,
    view: &'static str,
    made_by: &'static [(&'static str, usize)],
    own: &'static [Prop],
) -> Kind {
    Kind {
        style: Some("SliderStyleModel"),
        rules: &[
            Rule::Range {
                min: "min",
                max: "max",
                value: "value",
            },
            Rule::Positive("step"),
        ],
        made_by,
        ..kind(model, view, own)
    }
}

pub const FLOAT_SLIDER: Kind = slider_kind(
    "FloatSliderModel",
    "FloatSliderView",
    &[("slider", 1)],
    &[
        BEHAVIOR,
        CONTINUOUS,
        DESCRIPTION,
        DESCRIPTION_HTML,
        DISABLED,
        prop("max", Float, Initial::Float(100.0)).shown(),
        prop("min", Float, Initial::Float(0.0)).shown(),
        HORIZONTAL,
        READOUT,
        prop("readout_format", Text, Initial::Text(".2f")),
        prop("step", Float, Initial::Float(0.1)).shown(),
        prop("value", Float, Initial::Float(0.0)).kept().shown(),
    ],
);

pub const INT_SLIDER: Kind = slider_kind(
    "IntSliderModel",
    "IntSliderView",
    &[("int_slider", 1)],
    &[
        BEHAVIOR,
        CONTINUOUS,
        DESCRIPTION,
        DESCRIPTION_HTML,
        DISABLED,
        prop("max", Int, Initial::Int(100)).shown(),
        prop("min", Int, Initial::Int(0)).shown(),
        HORIZONTAL,
        READOUT,
        prop("readout_format", Text, Initial::Text("d")),
        prop("step", Int, Initial::Int(1)),
        prop("value", Int, Initial::Int(0)).kept().shown(),
    ],
);

pub const DROPDOWN: Kind = Kind {
    style: Some("DescriptionStyleModel"),
    rules: &[Rule::Choice {
        index: "index",
        options: "_options_labels",
    }],
    made_by: &[("dropdown", 1)],
    ..kind(
        "DropdownModel",
        "DropdownView",
        &[
            prop("_options_labels", Texts, Empty).shown(),
            DESCRIPTION,
            DESCRIPTION_HTML,
            DISABLED,
            prop("index", Int, Given).kept().shown(),
        ],
    )
};

pub const CHECKBOX: Kind = Kind {
    style: Some("CheckboxStyleModel"),
    made_by: &[("checkbox", 1)],
    ..kind(
        "CheckboxModel",
        "CheckboxView",
        &[
            DESCRIPTION,
            DESCRIPTION_HTML,
            DISABLED,
            prop("indent", Bool, Initial::Bool(true)),
            prop("value", Bool, Initial::Bool(false)).kept().shown(),
        ],
    )
};

pub const BUTTON: Kind = Kind {
    style: Some("ButtonStyleModel"),
    // Wide enough for its label (ipywidgets' fixed default width cuts long ones off).
    width: Some("max-content"),
    made_by: &[("button", 1)],
    ..kind(
        "ButtonModel",
        "ButtonView",
        &[
            prop("button_style", Text, Initial::Text("")),
            DESCRIPTION,
            DISABLED,
            prop("icon", Text, Initial::Text("")),
        ],
    )
};

pub const TEXT: Kind = Kind {
    style: Some("TextStyleModel"),
    made_by: &[("text", 1)],
    ..kind(
        "TextModel",
        "TextView",
        &[
            CONTINUOUS,
            DESCRIPTION,
            DESCRIPTION_HTML,
            DISABLED,
            prop("placeholder", Text, Initial::Text("\u{200b}")),
            prop("value", Text, Initial::Text("")).kept().shown(),
        ],
    )
};

pub const PROGRESS: Kind = Kind {
    style: Some("ProgressStyleModel"),
    rules: &[Rule::Range {
        min: "min",
        max: "max",
        value: "value",
    }],
    made_by: &[("progress", 1)],
    ..kind(
        "FloatProgressModel",
        "ProgressView",
        &[
            prop("bar_style", Text, Initial::Text("")),
            DESCRIPTION,
            DESCRIPTION_HTML,
            prop("max", Float, Initial::Float(100.0)).shown(),
            prop("min", Float, Initial::Float(0.0)),
            HORIZONTAL,
            // What the cell reports, not what the user chose: a rerun starts it again.
            prop("value", Float, Initial::Float(0.0)).shown(),
        ],
    )
};

const BOX: [Prop; 2] = [
    prop("box_style", Text, Initial::Text("")),
    prop("children", Models, Empty),
];

pub const HBOX: Kind = Kind {
    made_by: &[("hbox", 1)],
    ..kind("HBoxModel", "HBoxView", &BOX)
};

pub const VBOX: Kind = Kind {
    made_by: &[("vbox", 1), ("form", 2)],
    ..kind("VBoxModel", "VBoxView", &BOX)
};

pub const OUTPUT_AREA: Kind = Kind {
    module: (OUTPUT, "1.0.0"),
    view: (OUTPUT, "OutputView"),
    made_by: &[("output", 1), ("live", 1)],
    ..kind(
        "OutputModel",
        "",
        &[
            prop("msg_id", Text, Initial::Text("")),
            prop("outputs", Outputs, Empty),
        ],
    )
};

pub const LAYOUT: Kind = Kind {
    module: (BASE, "2.0.0"),
    view: (BASE, "LayoutView"),
    control: false,
    ..kind(
        "LayoutModel",
        "",
        &[
            unset_text("align_content"),
            unset_text("align_items"),
            unset_text("align_self"),
            unset_text("border_bottom"),
            unset_text("border_left"),
            unset_text("border_right"),
            unset_text("border_top"),
            unset_text("bottom"),
            unset_text("display"),
            unset_text("flex"),
            unset_text("flex_flow"),
            unset_text("grid_area"),
            unset_text("grid_auto_columns"),
            unset_text("grid_auto_flow"),
            unset_text("grid_auto_rows"),
            unset_text("grid_column"),
            unset_text("grid_gap"),
            unset_text("grid_row"),
            unset_text("grid_template_areas"),
            unset_text("grid_template_columns"),
            unset_text("grid_template_rows"),
            unset_text("height"),
            unset_text("justify_content"),
            unset_text("justify_items"),
            unset_text("left"),
            unset_text("margin"),
            unset_text("max_height"),
            unset_text("max_width"),
            unset_text("min_height"),
            unset_text("min_width"),
            unset_text("object_fit"),
            unset_text("object_position"),
            unset_text("order"),
            unset_text("overflow"),
            unset_text("padding"),
            unset_text("right"),
            unset_text("top"),
            unset_text("visibility"),
            unset_text("width"),
        ],
    )
};

// Descriptions take the width they need ("initial"), not ipywidgets' fixed default, which cuts
// longer ones off.
pub const SLIDER_STYLE: Kind = style_kind(
    "SliderStyleModel",
    &[DESCRIPTION_WIDTH, unset_text("handle_color")],
);
pub const CHECKBOX_STYLE: Kind = style_kind(
    "CheckboxStyleModel",
    &[unset_text("background"), DESCRIPTION_WIDTH],
);
pub const BUTTON_STYLE: Kind = style_kind(
    "ButtonStyleModel",
    &[
        unset_text("button_color"),
        unset_text("font_family"),
        unset_text("font_size"),
        unset_text("font_style"),
        unset_text("font_variant"),
        unset_text("font_weight"),
        unset_text("text_color"),
        unset_text("text_decoration"),
    ],
);
pub const TEXT_STYLE: Kind = style_kind(
    "TextStyleModel",
    &[
        unset_text("background"),
        DESCRIPTION_WIDTH,
        unset_text("font_size"),
        unset_text("text_color"),
    ],
);
pub const PROGRESS_STYLE: Kind = style_kind(
    "ProgressStyleModel",
    &[unset_text("bar_color"), DESCRIPTION_WIDTH],
);
pub const DESCRIPTION_STYLE: Kind = style_kind("DescriptionStyleModel", &[DESCRIPTION_WIDTH]);

/// anywidget's model module and the version range its Python package sends for the release
/// pinned in requirements.txt (anywidget 0.11.0 sends `~0.11.*`; a test compares the two).
pub const ANYWIDGET: (&str, &str) = ("anywidget", "~0.11.*");

/// The model's graph with its overlays ([`super::graph_widget`]): an anywidget view whose ES
/// module (`_esm`) draws `svg` once, recolours it from `overlays` (figure name → legend, each
/// tensor's colours, every tooltip) by the `overlay` the user picks, and on a click on a node
/// sets `selected` to the tensor it writes (and the dropdown `links` to it, when set). It starts
/// on `xmodel_err` (uncoloured until that overlay is sent). The browser may only pick an
/// overlay the kernel sent and a tensor of the graph.
pub const GRAPH_VIEW: Kind = Kind {
    module: ANYWIDGET,
    view: (ANYWIDGET.0, "AnyView"),
    rules: &[
        Rule::Member {
            value: "overlay",
            among: "overlays",
        },
        Rule::Member {
            value: "selected",
            among: "tensors",
        },
    ],
    made_by: &[("graph_widget", 1)],
    ..kind(
        "AnyModel",
        "",
        &[
            prop("_anywidget_id", Text, Initial::Text("qplay.GraphView")),
            prop("_css", Text, Given),
            prop("_esm", Text, Given),
            prop("links", Model, Unset),
            prop("model", Text, Given).shown(),
            prop("overlay", Text, Initial::Text("xmodel_err"))
                .kept()
                .shown(),
            prop("overlays", Object, Given),
            prop("selected", Text, Unset).kept().shown(),
            prop("svg", Text, Given),
            prop("tensors", Texts, Given),
        ],
    )
};

/// A `LayoutModel` with every layout property unset.
pub fn layout() -> State {
    LAYOUT.state(serde_json::json!({}))
}

/// An `OutputModel` showing the given nbformat outputs, with layout model `layout`.
pub fn output(layout: &str, outputs: Vec<serde_json::Value>) -> State {
    OUTPUT_AREA.state(serde_json::json!({"layout": reference(layout), "outputs": outputs}))
}

/// Every kind.
pub const ALL: [&Kind; 18] = [
    &FLOAT_SLIDER,
    &INT_SLIDER,
    &DROPDOWN,
    &CHECKBOX,
    &BUTTON,
    &TEXT,
    &PROGRESS,
    &HBOX,
    &VBOX,
    &OUTPUT_AREA,
    &GRAPH_VIEW,
    &LAYOUT,
    &SLIDER_STYLE,
    &CHECKBOX_STYLE,
    &BUTTON_STYLE,
    &TEXT_STYLE,
    &PROGRESS_STYLE,
    &DESCRIPTION_STYLE,
];

/// The kind with model name `model` (for anywidget models, which share `AnyModel`, the first;
/// [`of_state`] tells them apart).
pub fn of(model: &str) -> Option<&'static Kind> {
    ALL.into_iter().find(|k| k.model == model)
}

/// The kind of a model's state: by its `_model_name`, and for anywidget models (all
/// `AnyModel`) by their `_anywidget_id` too.
pub fn of_state(state: &State) -> Option<&'static Kind> {
    let model = state.get("_model_name")?.as_str()?;
    let id = state
        .get("_anywidget_id")
        .and_then(serde_json::Value::as_str);
    ALL.into_iter()
        .find(|k| k.model == model && k.anywidget_id() == id)
}

/// Every prelude function that creates widget models, with how many top-level models one call
/// creates (layouts and styles are not counted).
pub fn constructors() -> impl Iterator<Item = (&'static str, usize)> {
    ALL.into_iter().flat_map(|k| k.made_by.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn kinds_and_constructors_are_unique() {
        let mut models: Vec<_> = ALL.iter().map(|k| (k.model, k.anywidget_id())).collect();
        models.sort();
        models.dedup();
        assert_eq!(models.len(), ALL.len());
        let mut names: Vec<_> = constructors().map(|(n, _)| n).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
        for k in ALL {
            if let Some(style) = k.style {
                assert!(
                    of(style).is_some(),
                    "{}'s style {style} is declared",
                    k.model
                );
            }
            let mut props: Vec<_> = k.props().map(|p| p.name).collect();
            props.sort();
            let n = props.len();
            props.dedup();
            assert_eq!(props.len(), n, "{} declares a property twice", k.model);
        }
    }

    /// anywidget models all say `AnyModel`: their kind is told by `_anywidget_id`.
    #[test]
    fn anywidget_kinds_are_told_apart_by_their_id() {
        let graph = GRAPH_VIEW.state(
            json!({"layout": "IPY_MODEL_L", "_css": "", "_esm": "", "model": "m",
                                            "overlays": {}, "svg": "", "tensors": []}),
        );
        let id = |k: &Kind| (k.model, k.anywidget_id());
        assert_eq!(
            of_state(&graph).map(id),
            Some(("AnyModel", Some("qplay.GraphView")))
        );
        let mut other = graph.clone();
        other.insert("_anywidget_id".into(), "someone.Else".into());
        assert!(
            of_state(&other).is_none(),
            "another anywidget is not the graph view"
        );
        let slider = FLOAT_SLIDER.state(json!({"layout": "IPY_MODEL_L", "style": "IPY_MODEL_S",
                                               "min": 0.0, "max": 2.0, "value": 1.0, "step": 0.1}));
        assert_eq!(of_state(&slider).map(id), Some(("FloatSliderModel", None)));
        // The browser cannot turn the model into another kind.
        let e = GRAPH_VIEW
            .check_update(&graph, &changes(json!({"_anywidget_id": "someone.Else"})))
            .unwrap_err();
        assert!(e.contains("cannot change"), "{e}");
        let same = changes(json!({"_anywidget_id": "qplay.GraphView"}));
        assert_eq!(GRAPH_VIEW.check_update(&graph, &same), Ok(()));
    }

    fn changes(v: Value) -> State {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_slider_update_cannot_put_min_above_max() {
        let s = FLOAT_SLIDER.state(json!({"layout": "IPY_MODEL_L", "style": "IPY_MODEL_S",
                                          "min": 0.0, "max": 2.0, "value": 1.0, "step": 0.1}));
        let ok = |c: Value| FLOAT_SLIDER.check_update(&s, &changes(c));
        assert!(ok(json!({"value": 1.5})).is_ok());
        let e = ok(json!({"min": 3.0})).unwrap_err();
        assert!(e.contains("min (3) must not be above max (2)"), "{e}");
        let e = ok(json!({"max": -1.0})).unwrap_err();
        assert!(e.contains("must not be above"), "{e}");
        // Moving the range and the value together is one update.
        assert!(ok(json!({"min": 3.0, "max": 4.0, "value": 3.5})).is_ok());
        let e = ok(json!({"min": 1.5})).unwrap_err();
        assert!(e.contains("value 1 is outside [1.5, 2]"), "{e}");
        let e = ok(json!({"step": 0.0})).unwrap_err();
        assert!(e.contains("step must be above 0"), "{e}");
        let e = ok(json!({"tooltip": 3})).unwrap_err();
        assert!(e.contains("tooltip must be a string or null"), "{e}");
        assert!(ok(json!({"tooltip": null})).is_ok());
        let e = ok(json!({"description": null})).unwrap_err();
        assert!(e.contains("description must be a string, got null"), "{e}");
    }

    /// The anywidget version range sent is the one the pinned package sends.
    #[test]
    fn anywidget_version_follows_the_pinned_package() {
        let pins = include_str!("../../../requirements.txt");
        let pin = pins
            .lines()
            .find_map(|l| l.strip_prefix("anywidget=="))
            .expect("requirements.txt pins anywidget");
        let mut parts = pin.split('.');
        let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(ANYWIDGET.1, format!("~{major}.{minor}.*"));
    }

    #[test]
    fn a_graph_view_takes_only_its_own_tensors_and_overlays() {
        let s = GRAPH_VIEW.state(json!({"layout": "IPY_MODEL_L", "_css": "", "_esm": "",
            "model": "m", "svg": "<svg/>", "tensors": ["conv1", "relu1"],
            "overlays": {"none": {}, "xmodel_err": {}}}));
        let ok = |c: Value| GRAPH_VIEW.check_update(&s, &changes(c));
        assert!(ok(json!({"selected": "relu1"})).is_ok());
        assert!(ok(json!({"selected": null})).is_ok(), "nothing selected");
        let e = ok(json!({"selected": "conv9"})).unwrap_err();
        assert!(
            e.contains(r#"selected "conv9" is not one of the 2 tensors (conv1, relu1)"#),
            "{e}"
        );
        let e = ok(json!({"selected": 3})).unwrap_err();
        assert!(e.contains("selected must be a string or null"), "{e}");
        assert!(ok(json!({"overlay": "xmodel_err"})).is_ok());
        let e = ok(json!({"overlay": "saturation"})).unwrap_err();
        assert!(
            e.contains("not one of the 2 overlays (none, xmodel_err)"),
            "{e}"
        );
        let e = ok(json!({"overlays": []})).unwrap_err();
        assert!(e.contains("overlays must be an object"), "{e}");
    }

    #[test]
    fn slider_state_has_ipywidgets_keys() {
        let s = FLOAT_SLIDER.state(json!({"layout": reference("L"), "style": reference("S"),
                                                 "description": "scale", "readout_format": ".2f"}));
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
