//! `qplay check` on files: every shipped notebook passes (no dataflow errors), and a notebook
//! with a cycle fails with the cells and names of the cycle.

use std::path::Path;
use std::process::Command;

fn check(paths: &[&Path]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qplay"))
        .arg("check")
        .args(paths)
        .output()
        .expect("qplay runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn every_shipped_notebook_has_no_dataflow_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../notebooks");
    let mut notebooks: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ipynb"))
        .collect();
    notebooks.sort();
    assert!(notebooks.len() >= 5, "{notebooks:?}");
    let paths: Vec<&Path> = notebooks.iter().map(|p| p.as_path()).collect();
    let (ok, text) = check(&paths);
    assert!(ok, "{text}");
    for nb in &notebooks {
        let prefix = format!("{}: ", nb.display());
        let summary = text
            .lines()
            .find(|l| l.starts_with(&prefix) && l.contains(" code cells, "));
        assert!(
            summary.is_some_and(|l| l.contains(", 0 errors, ")),
            "{text}"
        );
    }
}

#[test]
fn a_cycle_fails_the_check_and_names_its_cells() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cycle.ipynb");
    let cell = |source: &str| {
        serde_json::json!({"cell_type": "code", "metadata": {}, "outputs": [],
                           "execution_count": null, "source": source})
    };
    let nb = serde_json::json!({
        "cells": [cell("let a = b + 1;"),
                  {"cell_type": "markdown", "metadata": {}, "source": "text"},
                  cell("let b = a * 2;")],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    std::fs::write(&path, nb.to_string()).unwrap();
    let (ok, text) = check(&[&path]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("code cells 1, 2: error: cells 1, 2 form a cycle"),
        "{text}"
    );
    assert!(text.contains("cell 1 reads `b` from cell 2"), "{text}");
    assert!(text.contains("1 errors"), "{text}");
    assert!(text.contains("dataflow errors in"), "{text}");
    // Not a notebook: a clear error that names the file.
    std::fs::write(&path, "{}").unwrap();
    let (ok, text) = check(&[&path]);
    assert!(!ok && text.contains("has no `cells` list"), "{text}");
}
