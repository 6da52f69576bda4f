//! Every widget kind qplay makes, declared once: its ipywidgets model and view, each property
//! with its type and default, the rules that tie properties together, which properties a
//! rerun of the cell keeps, and the prelude functions that create it.
//!
//! From this table come the initial states ([`super::models::state`]), the kernel's check of
//! browser updates ([`Kind::check_update`]), the values kept when a cell runs again
//! ([`Kind::kept`]) and the constructor names the kernel's dataflow counts ([`constructors`]).
//! The defaults are ipywidgets 8.1's, so that a notebook saved by qplay renders wherever
//! ipywidgets' own do.

use serde_json::{json, Value};

use super::models::State;

const CONTROLS: &str = "@jupyter-widgets/controls";
const BASE: &str = "@jupyter-widgets/base";
const OUTPUT: &str = "@jupyter-widgets/output";

/// What a property holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// A finite number.
    Float,
    /// An integer.
    Int,
    Bool,
    Text,
    /// A list of strings.
    Texts,
    /// Another model (`"IPY_MODEL_<id>"`).
    Model,
    /// A list of other models.
    Models,
    /// A list of nbformat outputs.
    Outputs,
}

/// A property's initial value, when the constructor does not give one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Initial {
    /// `null`; the property may be unset.
    Unset,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(&'static str),
    /// `[]`.
    Empty,
    /// No default: the constructor must give it.
    Given,
}

/// One property of a kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prop {
    pub name: &'static str,
    pub ty: Type,
    pub initial: Initial,
    /// Whether a rerun of the cell with unchanged code keeps the value the user gave it.
    pub kept: bool,
    /// Whether the widget's text form (`Debug`) shows it.
    pub shown: bool,
}

const fn prop(name: &'static str, ty: Type, initial: Initial) -> Prop {
    Prop {
        name,
        ty,
        initial,
        kept: false,
        shown: false,
    }
}

impl Prop {
    const fn kept(self) -> Prop {
        Prop { kept: true, ..self }
    }
    const fn shown(self) -> Prop {
        Prop {
            shown: true,
            ..self
        }
    }
}

/// A rule between properties, checked on the state an update would leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `min ≤ max` and `min ≤ value ≤ max`.
    Range {
        min: &'static str,
        max: &'static str,
        value: &'static str,
    },
    /// `index` points into the list `options`.
    Choice {
        index: &'static str,
        options: &'static str,
    },
    /// The property is above zero.
    Positive(&'static str),
}

/// One ipywidgets model kind.
#[derive(Debug)]
pub struct Kind {
    /// `_model_name`.
    pub model: &'static str,
    /// `_model_module` and its version.
    pub module: (&'static str, &'static str),
    /// `_view_module` and `_view_name`.
    pub view: (&'static str, &'static str),
    /// The style model that goes with it (a control's `style` property).
    pub style: Option<&'static str>,
    /// The width of its layout, where ipywidgets' default does not fit.
    pub width: Option<&'static str>,
    /// Properties (those every control has come first, see [`Kind::props`]).
    own: &'static [Prop],
    /// Whether it has the properties every control and output has (`layout`, `tooltip`, …).
    control: bool,
    pub rules: &'static [Rule],
    /// The prelude functions that create it, each with how many top-level models one call
    /// creates (a form is a box plus its submit button).
    pub made_by: &'static [(&'static str, usize)],
}

use Initial::{Empty, Given, Unset};
use Type::*;

/// What every control and output area has.
const CONTROL: [Prop; 4] = [
    prop("_dom_classes", Texts, Empty),
    prop("layout", Model, Given),
    prop("tabbable", Bool, Unset),
    prop("tooltip", Text, Unset),
];
const STYLE: Prop = prop("style", Model, Given);

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

/// Every kind.
pub const ALL: [&Kind; 17] = [
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
    &LAYOUT,
    &SLIDER_STYLE,
    &CHECKBOX_STYLE,
    &BUTTON_STYLE,
    &TEXT_STYLE,
    &PROGRESS_STYLE,
    &DESCRIPTION_STYLE,
];

/// The kind with model name `model`.
pub fn of(model: &str) -> Option<&'static Kind> {
    ALL.into_iter().find(|k| k.model == model)
}

/// The kind of a model's state (by its `_model_name`).
pub fn of_state(state: &State) -> Option<&'static Kind> {
    of(state.get("_model_name")?.as_str()?)
}

/// Every prelude function that creates widget models, with how many top-level models one call
/// creates (layouts and styles are not counted).
pub fn constructors() -> impl Iterator<Item = (&'static str, usize)> {
    ALL.into_iter().flat_map(|k| k.made_by.iter().copied())
}

impl Kind {
    /// All its properties: those every control has, its style, then its own.
    pub fn props(&self) -> impl Iterator<Item = &'static Prop> + '_ {
        let control: &'static [Prop] = if self.control { &CONTROL } else { &[] };
        let style: &'static [Prop] = if self.style.is_some() {
            std::slice::from_ref(&STYLE)
        } else {
            &[]
        };
        control.iter().chain(style).chain(self.own)
    }

    /// The property called `name`.
    pub fn prop(&self, name: &str) -> Option<&'static Prop> {
        self.props().find(|p| p.name == name)
    }

    /// The properties a rerun of the cell keeps.
    pub fn kept(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.props().filter(|p| p.kept).map(|p| p.name)
    }

    /// Whether cells create it (not a layout or style that comes with another model).
    pub fn is_top_level(&self) -> bool {
        !self.made_by.is_empty()
    }

    /// A short name for messages: `FloatSlider`.
    pub fn short_name(&self) -> &'static str {
        self.model.trim_end_matches("Model")
    }

    /// The full state of a new model: the header, `values`, and every other property at its
    /// default. Panics (a mistake in qplay, caught by its tests) if `values` names a property
    /// the kind does not have or misses one without a default.
    pub fn state(&self, values: Value) -> State {
        let Value::Object(mut values) = values else {
            panic!("{}: values must be an object", self.model);
        };
        let (module, version) = self.module;
        let mut s = State::new();
        s.insert("_model_module".into(), module.into());
        s.insert("_model_module_version".into(), version.into());
        s.insert("_model_name".into(), self.model.into());
        s.insert("_view_count".into(), Value::Null);
        s.insert("_view_module".into(), self.view.0.into());
        s.insert("_view_module_version".into(), version.into());
        s.insert("_view_name".into(), self.view.1.into());
        for p in self.props() {
            let value = match (values.remove(p.name), p.initial) {
                (Some(v), _) => v,
                (None, Initial::Given) => panic!("{}: no value for {}", self.model, p.name),
                (None, Initial::Unset) => Value::Null,
                (None, Initial::Bool(b)) => b.into(),
                (None, Initial::Int(i)) => i.into(),
                (None, Initial::Float(f)) => f.into(),
                (None, Initial::Text(t)) => t.into(),
                (None, Initial::Empty) => json!([]),
            };
            s.insert(p.name.into(), value);
        }
        if let Some(extra) = values.keys().next() {
            panic!("{} has no property {extra:?}", self.model);
        }
        s
    }

    /// Checks an update from the browser against the model's state: known properties of the
    /// right types, and the kind's rules on the state it would leave (`min ≤ value ≤ max`,
    /// `min ≤ max`, an index into the options). The error names the property and what it
    /// allows.
    pub fn check_update(&self, state: &State, changes: &State) -> Result<(), String> {
        let mut after = state.clone();
        for (key, value) in changes {
            let Some(p) = self.prop(key) else {
                return Err(format!("{} has no property {key:?}", self.short_name()));
            };
            check_type(p, value)?;
            after.insert(key.clone(), value.clone());
        }
        for rule in self.rules {
            let touched = |names: &[&str]| names.iter().any(|n| changes.contains_key(*n));
            match *rule {
                Rule::Range { min, max, value } if touched(&[min, max, value]) => {
                    let number = |k: &str| after.get(k).and_then(Value::as_f64);
                    let (Some(lo), Some(hi)) = (number(min), number(max)) else {
                        continue;
                    };
                    if lo > hi {
                        return Err(format!("{min} ({lo}) must not be above {max} ({hi})"));
                    }
                    let Some(v) = number(value) else { continue };
                    let slack = match self.prop(value).map(|p| p.ty) {
                        Some(Type::Float) => 1e-9 * (hi - lo).abs().max(1.0),
                        _ => 0.0,
                    };
                    if v < lo - slack || v > hi + slack {
                        return Err(format!("{value} {v} is outside [{lo}, {hi}]"));
                    }
                }
                Rule::Choice { index, options } if touched(&[index, options]) => {
                    let n = after
                        .get(options)
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    match after.get(index).and_then(Value::as_u64) {
                        Some(i) if (i as usize) < n => {}
                        _ => {
                            return Err(format!(
                                "{index} must be an integer from 0 to {}, got {}",
                                n.saturating_sub(1),
                                after.get(index).unwrap_or(&Value::Null)
                            ))
                        }
                    }
                }
                Rule::Positive(name) if touched(&[name]) => {
                    let v = after.get(name).and_then(Value::as_f64).unwrap_or(0.0);
                    if v <= 0.0 {
                        return Err(format!("{name} must be above 0, got {v}"));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn check_type(p: &Prop, value: &Value) -> Result<(), String> {
    let all = |f: fn(&Value) -> bool| value.as_array().is_some_and(|a| a.iter().all(f));
    let is_model = |v: &Value| v.as_str().is_some_and(|s| s.starts_with("IPY_MODEL_"));
    let ok = match p.ty {
        _ if value.is_null() => p.initial == Initial::Unset,
        Type::Float => value.as_f64().is_some_and(f64::is_finite),
        Type::Int => value.is_i64() || value.is_u64(),
        Type::Bool => value.is_boolean(),
        Type::Text => value.is_string(),
        Type::Texts => all(Value::is_string),
        Type::Model => is_model(value),
        Type::Models => all(is_model),
        Type::Outputs => all(Value::is_object),
    };
    if ok {
        return Ok(());
    }
    let wanted = match p.ty {
        Type::Float => "a finite number",
        Type::Int => "an integer",
        Type::Bool => "true or false",
        Type::Text => "a string",
        Type::Texts => "a list of strings",
        Type::Model => "a model reference",
        Type::Models => "a list of model references",
        Type::Outputs => "a list of outputs",
    };
    let unset = if p.initial == Initial::Unset {
        " or null"
    } else {
        ""
    };
    Err(format!("{} must be {wanted}{unset}, got {value}", p.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(v: Value) -> State {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn kinds_and_constructors_are_unique() {
        let mut models: Vec<_> = ALL.iter().map(|k| k.model).collect();
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
}
