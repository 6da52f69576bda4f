//! The widget record against every declared kind, and browser updates good and bad.

use super::*;
use kinds::{Kind, Rule, Type};
use qplay_kernel::jupyter::iopub::CapturedIopub;

fn state(v: Value) -> State {
    v.as_object().unwrap().clone()
}

/// A model of `kind` as its constructor would make it: a range of 0 to 10 at 5, the options
/// "a" and "b" with "a" chosen.
fn example(kind: &Kind) -> State {
    let mut values = json!({"layout": models::reference("L")});
    if kind.style.is_some() {
        values["style"] = models::reference("S");
    }
    for rule in kind.rules {
        match *rule {
            Rule::Range { min, max, value } => {
                values[min] = 0.into();
                values[max] = 10.into();
                values[value] = 5.into();
            }
            Rule::Choice { index, options } => {
                values[options] = json!(["a", "b"]);
                values[index] = 0.into();
            }
            Rule::Member { value, among } => {
                values[among] = match kind.prop(among).map(|p| p.ty) {
                    Some(Type::Object) => json!({"a": {}, "b": {}}),
                    _ => json!(["a", "b"]),
                };
                values[value] = "a".into();
            }
            Rule::Positive(_) => {}
        }
    }
    for p in kind.props() {
        if p.initial == kinds::Initial::Given && values.get(p.name).is_none() {
            values[p.name] = match p.ty {
                Type::Texts => json!([]),
                Type::Object => json!({}),
                _ => json!(""),
            };
        }
    }
    kind.state(values)
}

/// Another value the browser may give property `name` of a model in state `s`, and one of
/// the wrong type.
fn good_and_bad(kind: &Kind, s: &State, name: &str) -> (Value, Value) {
    let p = kind.prop(name).unwrap();
    let current = &s[name];
    let choice = kind
        .rules
        .iter()
        .any(|r| matches!(r, Rule::Choice { index, .. } if *index == name));
    let member = kind
        .rules
        .iter()
        .any(|r| matches!(r, Rule::Member { value, .. } if *value == name));
    let among = kind
        .rules
        .iter()
        .any(|r| matches!(r, Rule::Member { among, .. } if *among == name));
    let good = match p.ty {
        // The kind's identity: only its own value is good.
        _ if name == "_anywidget_id" => current.clone(),
        _ if choice => json!(1),
        _ if member => json!("b"),
        _ if among => current.clone(),
        Type::Float => json!(current.as_f64().unwrap_or(0.0) + 0.5),
        Type::Int => json!(current.as_i64().unwrap_or(0) + 1),
        Type::Bool => json!(!current.as_bool().unwrap_or(false)),
        Type::Text => json!("typed"),
        Type::Texts => json!(["typed", "more"]),
        Type::Model => models::reference("other"),
        Type::Models => json!([models::reference("other")]),
        Type::Outputs => json!([]),
        Type::Object => json!({"typed": 1}),
    };
    let bad = match p.ty {
        Type::Float | Type::Int | Type::Bool => json!("x"),
        _ => json!(3.5),
    };
    (good, bad)
}

struct Bench {
    widgets: Arc<Widgets>,
    iopub: Iopub,
    published: CapturedIopub,
    _dir: tempfile::TempDir,
}

fn bench() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(RuntimeLink::listen(dir.path()).unwrap());
    let widgets = Widgets::new(link);
    let (iopub, published) = Iopub::capture();
    widgets.set_detached(iopub.clone());
    Bench {
        widgets,
        iopub,
        published,
        _dir: dir,
    }
}

impl Bench {
    /// Runs cell `key` with `code`, which creates `state`; returns the state the model
    /// was opened with in the browser.
    fn run_cell(&mut self, key: &str, code: &str, id: &str, state: &State) -> State {
        self.widgets.begin_cell(key, code);
        let open = FromRuntime::CommOpen {
            comm_id: id.into(),
            state: state.clone(),
            wait: false,
            form: None,
        };
        self.widgets.runtime_message(open, None);
        self.widgets.end_cell(true);
        let opened = self.published.drain().pop().unwrap();
        assert_eq!(opened.header.msg_type, "comm_open");
        state_of(&opened.content["data"]["state"])
    }

    /// Sends a browser update; returns what it asks of the runtime and the kernel's answer
    /// to the browser.
    fn update(&mut self, id: &str, changes: Value) -> (FromBrowser, Value) {
        let data = json!({"method": "update", "state": changes});
        let apply = self.widgets.frontend_message(id, &data, &self.iopub);
        let answer = self.published.drain().pop().unwrap();
        (apply, answer.content["data"].clone())
    }
}

fn state_of(v: &Value) -> State {
    v.as_object().unwrap().clone()
}

#[test]
fn every_kind_is_checked_against_its_declaration_and_keeps_its_values() {
    for kind in kinds::ALL.into_iter().filter(|k| k.is_top_level()) {
        let mut b = bench();
        let fresh = example(kind);
        let id = format!("{}-1", kind.model);
        let opened = b.run_cell("cell", "code", &id, &fresh);
        assert_eq!(
            opened, fresh,
            "{}: a first run opens the state as made",
            kind.model
        );
        let mut expected = fresh.clone();
        for p in kind.props() {
            let (good, bad) = good_and_bad(kind, &expected, p.name);
            let (apply, answer) = b.update(&id, json!({p.name: good}));
            assert_eq!(answer["method"], "echo_update", "{} {}", kind.model, p.name);
            assert_eq!(apply.changes.len(), 1, "{} {}", kind.model, p.name);
            expected.insert(p.name.into(), good);
            let (apply, answer) = b.update(&id, json!({p.name: bad.clone()}));
            assert_eq!(
                apply,
                FromBrowser::default(),
                "{} {} = {bad}",
                kind.model,
                p.name
            );
            assert_eq!(answer["method"], "update", "the browser is put back");
            assert_eq!(answer["state"][p.name], expected[p.name]);
        }
        let (apply, _) = b.update(&id, json!({"no_such_property": 1}));
        assert_eq!(apply, FromBrowser::default());
        // The same code again: a new model takes the kept values the user gave the old one.
        let again = b.run_cell("cell", "code", &format!("{}-2", kind.model), &fresh);
        for p in kind.props() {
            let want = if p.kept { &expected } else { &fresh };
            assert_eq!(again[p.name], want[p.name], "{} {}", kind.model, p.name);
        }
        // Other code starts over.
        let other = b.run_cell("cell", "other code", &format!("{}-3", kind.model), &fresh);
        assert_eq!(other, fresh, "{}", kind.model);
    }
}

#[test]
fn a_browser_update_cannot_break_a_kinds_rules() {
    let mut b = bench();
    let slider = example(&kinds::FLOAT_SLIDER);
    b.run_cell("c", "code", "s", &slider);
    for (changes, error) in [
        (json!({"value": 11.0}), "outside"),
        (json!({"min": 6.0}), "outside"),
        (json!({"min": 20.0}), "above"),
        (json!({"max": -1.0}), "above"),
        (json!({"step": 0.0}), "above 0"),
    ] {
        let kind = &kinds::FLOAT_SLIDER;
        let e = kind
            .check_update(&slider, &state(changes.clone()))
            .unwrap_err();
        assert!(e.contains(error), "{changes}: {e}");
        let (apply, answer) = b.update("s", changes);
        assert_eq!(apply, FromBrowser::default());
        assert_eq!(answer["method"], "update");
    }
    // The slider still takes every value in its range (a rejected `min` left it intact).
    let (apply, _) = b.update("s", json!({"value": 0.0}));
    assert_eq!(apply.changes.len(), 1);
    let int = example(&kinds::INT_SLIDER);
    b.run_cell("i", "code", "i", &int);
    let (apply, _) = b.update("i", json!({"value": 1.5}));
    assert_eq!(
        apply,
        FromBrowser::default(),
        "an int slider takes integers only"
    );
    let dropdown = example(&kinds::DROPDOWN);
    b.run_cell("d", "code", "d", &dropdown);
    let e = kinds::DROPDOWN
        .check_update(&dropdown, &state(json!({"index": 2})))
        .unwrap_err();
    assert!(e.contains("from 0 to 1"), "{e}");
    let (apply, _) = b.update("d", json!({"_options_labels": ["only"], "index": 0}));
    assert_eq!(apply.changes.len(), 1, "options and index change together");
}
