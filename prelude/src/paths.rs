//! Where qplay finds its files: the project root (bundled `models/` and `data/`), the cache
//! directory, and the ONNX Runtime shared library.
//!
//! The root is `$QPLAY_HOME` when set, else the checkout this crate was built from. The
//! installed kernel sets `QPLAY_HOME`, so notebooks work from any working directory.

use std::path::{Path, PathBuf};

/// The project root: the folder holding `models/` and `data/`.
pub fn root() -> PathBuf {
    match std::env::var_os("QPLAY_HOME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("prelude/ has a parent")
            .to_path_buf(),
    }
}

/// The bundled models folder, `<root>/models`.
pub fn models_dir() -> PathBuf {
    root().join("models")
}

/// A writable cache folder for downloads and evaluation results: `$QPLAY_CACHE`, else
/// `$XDG_CACHE_HOME/qplay`, else `~/.cache/qplay`, else `<root>/.cache`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("QPLAY_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("qplay");
    }
    if let Some(p) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join(".cache").join("qplay");
    }
    root().join(".cache")
}

/// The ONNX Runtime library to load: `$ORT_DYLIB_PATH`, else the one inside the project's
/// `.venv` (from the `onnxruntime` wheel), else `None`.
pub fn onnxruntime_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let lib = root().join(".venv").join("lib");
    let entries = std::fs::read_dir(&lib).ok()?;
    entries
        .flatten()
        .map(|e| e.path().join("site-packages/onnxruntime/capi"))
        .filter_map(|capi| std::fs::read_dir(capi).ok())
        .flat_map(|dir| dir.flatten().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so."))
        })
}
