//! Patch 7 of vendor/evcxr/PATCHES.md: a build folder keeps its cells' compiled libraries and
//! inferred types by content, and a later context in the same folder uses them for equal cells,
//! with the same results, and never after its dependencies changed. A test binary of its own:
//! the build folder is chosen through `EVCXR_TMPDIR`, which is process-wide.

mod common;

use common::{phases, text};
use evcxr::EvalContext;
use std::path::Path;

const CELLS: [&str; 3] = [
    "let base: u64 = 6;",
    "let product = (1..=base).product::<u64>();",
    "format!(\"{product} {}\", product % 7)",
];

/// Runs `cells` in a new context keeping results in `dir`; returns each cell's phases, the last
/// cell's value and the type of `product`.
fn session(dir: &Path, cells: &[&str]) -> (Vec<Vec<String>>, String, String) {
    // SAFETY: the only test of this binary; no other thread reads the environment meanwhile.
    unsafe { std::env::set_var("EVCXR_TMPDIR", dir) };
    let runtime = std::process::Command::new(env!("CARGO_BIN_EXE_qplay"));
    let (mut ctx, _outputs) = EvalContext::with_subprocess_command_lazily(runtime).unwrap();
    ctx.keep_results(dir.join("results"), 64 << 20);
    let mut all = Vec::new();
    let mut last = String::new();
    for cell in cells {
        let out = ctx.eval(cell).unwrap_or_else(|e| panic!("{cell}: {e}"));
        all.push(phases(&out).iter().map(|p| p.to_string()).collect());
        last = text(&out).to_string();
    }
    let product_type = ctx
        .variables_and_types()
        .find(|(name, _)| *name == "product")
        .map(|(_, ty)| ty.to_string())
        .unwrap();
    (all, last, product_type)
}

/// Whether a cell was compiled, by Cargo or by rustc alone (patch 8), rather than kept.
fn compiled(phases: &[String]) -> bool {
    phases.iter().any(|p| p.starts_with("Final compile"))
}

#[test]
fn equal_cells_reuse_kept_libraries_and_types_until_a_dependency_changes() {
    let dir = tempfile::tempdir().unwrap();

    // The first session compiles and infers everything.
    let (first, value, product_type) = session(dir.path(), &CELLS);
    assert_eq!(value, "\"720 6\"");
    assert_eq!(product_type, "u64");
    assert!(
        first[1].contains(&"Type inference".to_string()),
        "{first:?}"
    );
    for phases in &first {
        assert!(compiled(phases), "{first:?}");
    }

    // A second session of the same cells: its first compile runs Cargo (the dependencies are
    // read from it), the others use what the first session kept, with equal results.
    let (second, value, product_type) = session(dir.path(), &CELLS);
    assert_eq!(value, "\"720 6\"");
    assert_eq!(product_type, "u64");
    assert!(compiled(&second[0]), "{second:?}");
    assert!(second[1].contains(&"Kept types".to_string()), "{second:?}");
    for phases in &second[1..] {
        assert!(phases.contains(&"Kept library".to_string()), "{second:?}");
    }

    // After another cell: all three kept (a cell's source does not depend on how many ran).
    let mut after_another = vec!["1 + 1"];
    after_another.extend(CELLS);
    let (third, value, _) = session(dir.path(), &after_another);
    assert_eq!(value, "\"720 6\"");
    assert!(compiled(&third[0]), "{third:?}");
    for phases in &third[1..] {
        assert!(phases.contains(&"Kept library".to_string()), "{third:?}");
    }

    // A changed dependency (any file of the target's deps folder): nothing kept is used.
    let deps = std::fs::read_dir(dir.path().join("target"))
        .unwrap()
        .map(|entry| entry.unwrap().path().join("debug").join("deps"))
        .find(|path| path.is_dir())
        .expect("a deps folder");
    std::fs::write(deps.join("libchanged.rlib"), "another build").unwrap();
    let (changed, value, _) = session(dir.path(), &CELLS);
    assert_eq!(value, "\"720 6\"");
    assert!(
        changed[1].contains(&"Type inference".to_string()),
        "{changed:?}"
    );
    for phases in &changed {
        assert!(compiled(phases), "{changed:?}");
    }

    // An entry whose kept key text differs is not used, even under its file name.
    let results = dir.path().join("results");
    for entry in std::fs::read_dir(&results).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            let key = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, key.replace("product", "produce")).unwrap();
        }
    }
    let (tampered, value, _) = session(dir.path(), &CELLS);
    assert_eq!(value, "\"720 6\"");
    for phases in &tampered {
        assert!(
            !phases.iter().any(|p| p.starts_with("Kept")),
            "{tampered:?}"
        );
    }
}
