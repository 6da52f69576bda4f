use super::*;
use crate::reactive::names;

#[test]
fn finds_definitions_and_uses() {
    let s = analyze(
        ":dep foo = \"1\"\nlet (a, mut b) = (x + 1, y.len());\nfn f(v: f64) -> f64 { v * k }\n\
             use std::collections::{HashMap as Map, BTreeSet};\nprintln!(\"{acc:.2} {}\", z);",
    );
    assert!(s.parsed);
    assert_eq!(s.defines, names(&["a", "b", "f", "Map", "BTreeSet"]));
    assert_eq!(s.item_defines, names(&["f", "Map", "BTreeSet"]));
    for used in ["x", "y", "acc", "z", "println"] {
        assert!(s.references.contains(used), "{used}");
    }
    // Inside the `fn` only items can be meant (`k`, and the type `f64`).
    assert_eq!(s.item_references, names(&["f64", "k", "v"]));
    assert!(!s.references.contains("k"));
    assert!(!s.references.contains("len"));
    // Method names inside a macro's arguments are not uses.
    let s = analyze("println!(\"{} {}\", v.reset().version(), n);");
    assert!(s.references.contains("v") && s.references.contains("n"));
    assert!(!s.references.contains("reset") && !s.references.contains("version"));
    // A macro that is not a list of expressions counts every identifier.
    let s = analyze("let x = vec![seed; count];");
    assert!(s.references.contains("seed") && s.references.contains("count"));
}

#[test]
fn names_bound_in_nested_scopes_are_local_there() {
    let free = |code: &str| analyze(code).free_references;
    // A nested block's `let`, a `for` pattern, a closure's parameter, a `match` arm and an
    // `if let` bind names that are not notebook variables inside their scope …
    let f = free("for x in xs {\n    let [p, q] = [x, x].map(|v| v + k);\n    println!(\"{} {q}\", 1.0 * p);\n}");
    assert_eq!(f, names(&["k", "println", "xs"]));
    let f = free("let r = match opt { Some(q) => q + a, None => b };");
    assert_eq!(f, names(&["Some", "a", "b", "opt"]));
    let f = free("if let Some(q) = opt { q } else { q }");
    assert!(
        f.contains("opt") && f.contains("q"),
        "the else branch reads the notebook's q"
    );
    let f = free("while let Some(q) = it.next() { total += q; }");
    assert_eq!(f, names(&["Some", "it", "total"]));
    // … but a use before the local binding, or in its own initializer, is the notebook's.
    let f = free("{\n    println!(\"{}\", q);\n    let q = 1;\n}");
    assert!(f.contains("q"));
    let f = free("{\n    let q = q + 1;\n    q\n}");
    assert!(f.contains("q"));
    // Assigning to a local of a nested scope changes no notebook variable.
    let s = analyze("for i in 0..3 {\n    let mut n = 0;\n    n += i;\n    total += n;\n}");
    assert_eq!(s.assigns, names(&["total"]));
}

#[test]
fn maps_widget_constructors_to_their_bindings() {
    let s = analyze(
            "let scale = slider(\"s\", 0.0, 1.0, 0.5).step(0.1);\nlet zp = int_slider(\"z\", 0, 9, 0);\n\
             let f = form(&[&scale], \"Apply\");\nhbox(&[&scale, &zp])",
        );
    assert_eq!(
        s.widget_bindings,
        vec![
            names(&["scale"]),
            names(&["zp"]),
            names(&["f"]),
            names(&["f"]),
            names(&[])
        ]
    );
}

#[test]
fn widgets_made_inside_a_fn_are_made_when_it_is_called() {
    let s = analyze(
        "fn knob() -> FloatSlider { slider(\"k\", 0.0, 1.0, 0.5) }\nlet t = checkbox(\"t\", true);",
    );
    assert_eq!(s.widget_bindings, vec![names(&["t"])]);
}

#[test]
fn knows_what_keeps_a_cell_from_being_wrapped() {
    let plain = analyze("let z = w.value() + 100.0;\nprintln!(\"{z}\");\nz * 2.0");
    assert_eq!(plain.wrap_obstacle(), None);
    assert_eq!(plain.tail.as_deref(), Some("z * 2.0"));
    assert!(
        plain.body.contains("let z = w . value () + 100.0 ;"),
        "{}",
        plain.body
    );
    assert!(analyze("let a = 1;").tail.is_none());
    let cases = [
        ("fn f() {}\nf()", "`fn`"),
        ("use std::fmt;", "`use`"),
        (":dep foo = \"1\"\nlet x = 1;", "commands"),
        ("let x = \"1\".parse::<i32>()?;", "`?`"),
        ("let x = f().await;", "`.await`"),
        ("let x = ;", "parse"),
    ];
    for (code, why) in cases {
        let obstacle = analyze(code).wrap_obstacle().unwrap_or_default();
        assert!(obstacle.contains(why), "{code}: {obstacle}");
    }
    // `?` inside a closure returns from the closure only.
    let closure = analyze(
        "let f = |s: &str| -> Result<i32, std::num::ParseIntError> { Ok(s.parse::<i32>()?) };",
    );
    assert_eq!(closure.wrap_obstacle(), None);
}

#[test]
fn unparsable_cells_use_every_identifier() {
    let s = analyze("let x = ;\nfoo(bar)");
    assert!(!s.parsed);
    assert!(s.references.contains("bar"));
    assert!(s.defines.is_empty());
}
