use super::*;

#[test]
fn widgets_work_as_plain_values_without_a_kernel() {
    let s = slider("scale", 0.0, 2.0, 5.0);
    assert_eq!(s.value(), 2.0, "clamped like ipywidgets");
    let s = s.step(0.25);
    s.set(0.5);
    assert_eq!(s.value(), 0.5);
    let d = dropdown("layer", &["a", "b"], "b");
    assert_eq!((d.value(), d.index()), ("b".to_string(), 1));
    assert_eq!(int_slider("zp", -128, 127, 300).value(), 127);
    assert!(checkbox("on", true).value());
    assert_eq!(text("name", "x").value(), "x");
    assert_eq!(button("go").clicks(), 0);
    let p = progress("eval", 10);
    p.set(20);
    assert_eq!(p.value(), 10.0);
    let bundle = s.mime_bundle();
    assert_eq!(bundle[models::VIEW_MIME]["model_id"], s.model_id());
    assert!(bundle["text/plain"]
        .as_str()
        .unwrap()
        .starts_with("FloatSlider("));
}

/// Each constructor the kinds declare exists and makes the top-level models they say.
#[test]
fn every_declared_constructor_makes_its_kind() {
    for (name, count) in kinds::constructors() {
        let s = slider("s", 0, 1, 0);
        let made: Vec<String> = match name {
            "slider" => vec![s.core.model.clone()],
            "int_slider" => vec![int_slider("i", 0, 1, 0).core.model.clone()],
            "dropdown" => vec![dropdown("d", &["a"], "a").core.model.clone()],
            "checkbox" => vec![checkbox("c", false).core.model.clone()],
            "button" => vec![button("b").core.model.clone()],
            "text" => vec![text("t", "").core.model.clone()],
            "progress" => vec![progress("p", 1).core.model.clone()],
            "hbox" => vec![hbox(&[&s]).core.model.clone()],
            "vbox" => vec![vbox(&[&s]).core.model.clone()],
            "output" => vec![output().core.model.clone()],
            "live" => vec![live(&[&s], || 1).core.model.clone()],
            "graph_widget" => {
                let m = crate::quant::workbench("resnet8_int8").unwrap();
                let g = crate::quant::graph(&m).unwrap();
                vec![graph_widget(&g).core.model.clone()]
            }
            "form" => {
                let f = form(&[&s], "apply");
                vec!["ButtonModel".into(), f.core.model.clone()]
            }
            other => panic!("{other} is declared but not tried here"),
        };
        assert_eq!(made.len(), count, "{name}");
        let kind = kinds::of(made.last().unwrap()).unwrap();
        assert!(kind.made_by.contains(&(name, count)), "{name}");
        assert!(made.iter().all(|m| kinds::of(m).unwrap().is_top_level()));
    }
}

#[test]
#[should_panic(expected = "is not one of the options")]
fn dropdown_names_the_options_on_a_bad_value() {
    dropdown("layer", &["a", "b"], "c");
}

#[test]
#[should_panic(expected = "must be finite and below max")]
fn slider_rejects_an_empty_range() {
    slider("scale", 1.0, 1.0, 1.0);
}

#[test]
fn live_views_redraw_when_their_widgets_change() {
    let k = slider("k", 0.0, 10.0, 1.0);
    let k2 = k.clone();
    let view = live(&[&k], move || format!("k = {}", k2.value()));
    assert_eq!(view_text(&view), "k = 1");
    let mut change = State::new();
    change.insert("value".into(), 4.0.into());
    registry().apply(
        &[crate::runtime::protocol::Change {
            comm_id: k.model_id().to_string(),
            state: change,
        }],
        &[],
    );
    assert_eq!(view_text(&view), "k = 4");
    let other = slider("other", 0.0, 1.0, 0.0);
    registry().apply(&[], &[other.model_id().to_string()]);
    assert_eq!(view_text(&view), "k = 4");
}

fn view_text(view: &Live) -> String {
    let outputs = view.core.get("outputs");
    outputs[0]["data"]["text/plain"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_panicking_live_view_shows_the_panic() {
    let k = slider("k", 0.0, 1.0, 0.0);
    let view = live(&[&k], || -> String { panic!("boom") });
    assert_eq!(view.core.get("outputs")[0]["ename"], "Panic");
}
