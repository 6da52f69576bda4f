//! The types of a widget kind's declaration ([`super::kinds`] holds the declarations): its
//! properties with their types and defaults, the rules between them, and what is derived from
//! one: a new model's state and the check of an update from the browser.

use serde_json::{json, Value};

use crate::runtime::protocol::State;

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
    /// A JSON object (data a custom widget's view draws).
    Object,
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

pub(super) const fn prop(name: &'static str, ty: Type, initial: Initial) -> Prop {
    Prop {
        name,
        ty,
        initial,
        kept: false,
        shown: false,
    }
}

impl Prop {
    pub(super) const fn kept(self) -> Prop {
        Prop { kept: true, ..self }
    }
    pub(super) const fn shown(self) -> Prop {
        Prop {
            shown: true,
            ..self
        }
    }
}

/// What every control and output area has.
const CONTROL: [Prop; 4] = [
    prop("_dom_classes", Type::Texts, Initial::Empty),
    prop("layout", Type::Model, Initial::Given),
    prop("tabbable", Type::Bool, Initial::Unset),
    prop("tooltip", Type::Text, Initial::Unset),
];
const STYLE: Prop = prop("style", Type::Model, Initial::Given);

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
    /// The text `value` is one of the list `among`, or one of the keys of the object `among`
    /// (unset passes where the property may be unset).
    Member {
        value: &'static str,
        among: &'static str,
    },
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
    pub(super) own: &'static [Prop],
    /// Whether it has the properties every control and output has (`layout`, `tooltip`, …).
    pub(super) control: bool,
    pub rules: &'static [Rule],
    /// The prelude functions that create it, each with how many top-level models one call
    /// creates (a form is a box plus its submit button).
    pub made_by: &'static [(&'static str, usize)],
}

impl Kind {
    /// The `_anywidget_id` it declares (anywidget kinds only).
    pub fn anywidget_id(&self) -> Option<&'static str> {
        match self.own.iter().find(|p| p.name == "_anywidget_id")?.initial {
            Initial::Text(id) => Some(id),
            _ => None,
        }
    }

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
            if key == "_anywidget_id" && value.as_str() != self.anywidget_id() {
                return Err(format!(
                    "_anywidget_id names the kind ({:?}) and cannot change",
                    self.anywidget_id().unwrap_or_default()
                ));
            }
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
                Rule::Member { value, among } if touched(&[value, among]) => {
                    let Some(v) = after.get(value).and_then(Value::as_str) else {
                        continue;
                    };
                    let names: Vec<&str> = match after.get(among) {
                        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                        Some(Value::Object(o)) => o.keys().map(String::as_str).collect(),
                        _ => Vec::new(),
                    };
                    if !names.contains(&v) {
                        let shown: Vec<&str> = names.iter().copied().take(8).collect();
                        let more = if names.len() > shown.len() {
                            ", …"
                        } else {
                            ""
                        };
                        return Err(format!(
                            "{value} {v:?} is not one of the {} {among} ({}{more})",
                            names.len(),
                            shown.join(", ")
                        ));
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
        Type::Object => value.is_object(),
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
        Type::Object => "an object",
    };
    let unset = if p.initial == Initial::Unset {
        " or null"
    } else {
        ""
    };
    Err(format!("{} must be {wanted}{unset}, got {value}", p.name))
}
