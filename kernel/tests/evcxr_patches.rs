//! qplay's changes to evcxr (vendor/evcxr/PATCHES.md), each observed through evcxr's own API with
//! this crate's binary as the runtime process, as the kernel runs it. Each context builds in a
//! directory of its own, only its cells and (patch 8's test) one tiny path dependency.

mod common;

use common::{phases, text};
use evcxr::{EvalContext, EvalContextOutputs};

/// A context with this crate's binary as its runtime. evcxr waits after each cell until what it
/// printed has been read, so nothing here prints: values come back as results.
fn context() -> (EvalContext, EvalContextOutputs) {
    let runtime = std::process::Command::new(env!("CARGO_BIN_EXE_qplay"));
    EvalContext::with_subprocess_command(runtime).expect("evcxr starts with qplay as its runtime")
}

fn type_of(ctx: &EvalContext, variable: &str) -> String {
    ctx.variables_and_types()
        .find(|(name, _)| *name == variable)
        .map(|(_, ty)| ty.to_string())
        .unwrap_or_else(|| panic!("no variable {variable}"))
}

/// Patch 1: rust-analyzer infers types only for a cell with a `let` whose type the source does
/// not give; the types stored are the same either way.
#[test]
fn type_inference_runs_only_for_a_let_that_needs_it() {
    let (mut ctx, _outputs) = context();
    let explicit = ctx.eval("let explicit: Vec<u8> = vec![1, 2, 3];").unwrap();
    assert!(
        !phases(&explicit).contains(&"Type inference"),
        "{explicit:?}"
    );
    let plain = ctx.eval("explicit.len() + 1").unwrap();
    assert!(!phases(&plain).contains(&"Type inference"), "{plain:?}");
    assert_eq!(text(&plain), "4");
    let untyped = ctx.eval("let inferred = explicit.len() * 2;").unwrap();
    assert!(phases(&untyped).contains(&"Type inference"), "{untyped:?}");
    assert_eq!(type_of(&ctx, "explicit"), "Vec<u8>");
    assert_eq!(type_of(&ctx, "inferred"), "usize");
    // A pattern with more than one name, or a type with `_`, still needs inference.
    let tuple = ctx.eval("let (left, right): (u8, i64) = (1, 2);").unwrap();
    assert!(phases(&tuple).contains(&"Type inference"), "{tuple:?}");
    assert_eq!(type_of(&ctx, "right"), "i64");
    let partial = ctx.eval("let partial: Vec<_> = vec![1u16];").unwrap();
    assert!(phases(&partial).contains(&"Type inference"), "{partial:?}");
    assert_eq!(type_of(&ctx, "partial"), "Vec<u16>");
    // A type that cannot be stored is still refused by name.
    let error = ctx
        .eval("let add_one = |x: u8| x + 1;")
        .unwrap_err()
        .to_string();
    assert!(error.contains("`add_one` is a closure"), "{error}");
}

/// Patch 2: a cell takes out of the variable store (and compiles the types of) only the
/// variables whose names it writes; the others stay as they are, also when the cell panics.
#[test]
fn a_cell_carries_only_the_variables_it_names() {
    let (mut ctx, _outputs) = context();
    ctx.eval("let named: u32 = 20; let other: String = String::from(\"kept\");")
        .unwrap();
    ctx.eval("let sum: u32 = named + 1;").unwrap();
    let source = ctx.last_source().unwrap();
    assert!(source.contains("stringify!(named)"), "{source}");
    assert!(!source.contains("stringify!(other)"), "{source}");
    // A name inside an inline format argument reaches its variable.
    let shown = ctx.eval("format!(\"{other} {sum}\")").unwrap();
    assert_eq!(text(&shown), "\"kept 21\"");
    // A panic in a cell that does not name `other` leaves it in the store.
    let _ = ctx.eval("let boom: u32 = named; panic!(\"boom {boom}\");");
    assert_eq!(text(&ctx.eval("other.len() as u32 + named").unwrap()), "24");
}

/// Patches 3 and 4: rust-analyzer loads and infers on another thread while cells compile and run;
/// the analysis writes nothing the compiler reads, and the next inference waits for it.
#[test]
fn analysis_in_the_background_leaves_compiles_alone() {
    let (mut ctx, _outputs) = context();
    let analysis = ctx
        .analyze_in_background("let probe = vec![1u8, 2];")
        .unwrap();
    for i in 0..3 {
        let out = ctx.eval(&format!("{i} * 10 + 1")).unwrap();
        assert_eq!(text(&out), format!("{}", i * 10 + 1));
    }
    analysis.join().unwrap();
    let out = ctx
        .eval("let bytes = vec![1u8, 2, 3]; bytes.len()")
        .unwrap();
    assert_eq!(text(&out), "3");
    assert_eq!(type_of(&ctx, "bytes"), "Vec<u8>");
}

/// Patch 6: a context started lazily has compiled nothing before its first cell, which then
/// starts the runtime's work itself.
#[test]
fn a_lazily_started_context_compiles_nothing_before_its_first_cell() {
    let runtime = std::process::Command::new(env!("CARGO_BIN_EXE_qplay"));
    let (mut ctx, _outputs) = EvalContext::with_subprocess_command_lazily(runtime).unwrap();
    assert!(ctx.last_source().is_err(), "no source written yet");
    assert_eq!(text(&ctx.eval("6 * 7").unwrap()), "42");
}

/// Patch 8: after a Cargo build, a compile runs rustc itself with the command Cargo ran, while
/// nothing Cargo reads has changed; its errors are reported as Cargo's are, and an edit of a path
/// dependency's source sends the next compile back to Cargo, which rebuilds it.
#[test]
fn compiles_run_rustc_directly_until_a_path_dependency_changes() {
    let dir = tempfile::tempdir().unwrap();
    let dependency = dir.path().join("probe");
    std::fs::create_dir_all(dependency.join("src")).unwrap();
    std::fs::write(
        dependency.join("Cargo.toml"),
        "[package]\nname = \"probe\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    let source = dependency.join("src").join("lib.rs");
    std::fs::write(&source, "pub fn value() -> u32 { 1 }\n").unwrap();
    let (mut ctx, _outputs) = context();
    let mut state = ctx.state();
    let config = format!("{{ path = {:?} }}", dependency.display().to_string());
    state.add_dep("probe", &config).unwrap();

    let first = ctx.eval_with_state("probe::value() + 10", state).unwrap();
    assert_eq!(text(&first), "11");
    assert!(phases(&first).contains(&"Final compile"), "{first:?}");
    let second = ctx.eval("probe::value() + 20").unwrap();
    assert_eq!(text(&second), "21");
    assert!(
        phases(&second).contains(&"Final compile (rustc)"),
        "{second:?}"
    );

    // An error in the cell, from rustc alone, is the cell's error; the next cell still compiles.
    let error = ctx.eval("probe::value() + \"x\"").unwrap_err();
    assert!(
        matches!(error, evcxr::Error::CompilationErrors(_)),
        "{error}"
    );
    assert!(error.to_string().contains("cannot add"), "{error}");
    let after_error = ctx.eval("probe::value() + 30").unwrap();
    assert_eq!(text(&after_error), "31");

    // The dependency edited (its modification time moved past the last build's): Cargo again.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&source, "pub fn value() -> u32 { 2 }\n").unwrap();
    let edited = ctx.eval("probe::value() + 40").unwrap();
    assert_eq!(text(&edited), "42");
    assert!(phases(&edited).contains(&"Final compile"), "{edited:?}");
}

/// Patch 9: a cell run again whose `let`s bind only variables that existed compiles with their
/// former types while rust-analyzer infers the new ones, and that compile is used only when the
/// inferred types give the same source. A changed type compiles again; a variable whose type
/// cannot be told is refused as before, and the cell compiled beside the inference never runs.
/// Cells named with `set_cell` keep rustc's incremental state apart; results are the same.
#[test]
fn a_cell_run_again_compiles_beside_its_type_inference() {
    let (mut ctx, _outputs) = context();
    ctx.set_cell(Some("first cell"));
    let first = ctx.eval("let total = 40 + 1;").unwrap();
    assert!(phases(&first).contains(&"Type inference"), "{first:?}");

    let again = ctx.eval("let total = 40 + 2;").unwrap();
    assert!(
        phases(&again).contains(&"Type inference beside the compile"),
        "{again:?}"
    );
    ctx.set_cell(Some("second cell"));
    assert_eq!(text(&ctx.eval("total").unwrap()), "42");
    assert_eq!(type_of(&ctx, "total"), "i32");

    ctx.set_cell(Some("first cell"));
    let changed = ctx
        .eval("let total = String::from(\"forty-three\");")
        .unwrap();
    assert!(
        !phases(&changed).contains(&"Type inference beside the compile"),
        "{changed:?}"
    );
    assert_eq!(type_of(&ctx, "total"), "String");
    ctx.set_cell(Some("second cell"));
    assert_eq!(text(&ctx.eval("total.len()").unwrap()), "11");

    // With its former type (String) this cell compiles, but rust-analyzer cannot tell the type:
    // refused as before, and the compiled cell did not run (the variable is unchanged, the
    // cell's other variable does not exist).
    ctx.set_cell(Some("first cell"));
    let refused = ctx.eval("let total = Default::default(); let total_len = total.len();");
    assert!(refused.is_err(), "{refused:?}");
    ctx.set_cell(None);
    assert_eq!(text(&ctx.eval("total.len()").unwrap()), "11");
    assert!(!ctx
        .variables_and_types()
        .any(|(name, _)| name == "total_len"));
}
