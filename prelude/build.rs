//! Generates the ONNX protobuf types (`onnx.rs` in `OUT_DIR`) from the `onnx.proto` that the
//! project's Python environment ships with the `onnx` package, using protox (a pure-Rust
//! protobuf compiler; no `protoc` needed). `$ONNX_PROTO` may name another `onnx.proto`.
//!
//! Compiles the TorchScript shim (`csrc/torchscript.cpp`; `csrc/torchscript_graph.cpp`, which
//! reads the root graph's dataflow for drawing; `csrc/torchscript_adaround.cpp`, which exposes
//! each packed weight's input for AdaRound) against libtorch's headers (`$LIBTORCH`, as
//! torch-sys uses it), with the flags torch-sys uses for its own C++ wrapper.

use std::path::{Path, PathBuf};

fn find_onnx_proto() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ONNX_PROTO") {
        return Some(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    // $LIBTORCH is site-packages/torch (scripts/env.sh); onnx sits beside it.
    if let Some(torch) = std::env::var_os("LIBTORCH") {
        candidates.push(Path::new(&torch).join("../onnx/onnx.proto"));
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").ok()?);
    if let Ok(dir) = std::fs::read_dir(manifest.join("../.venv/lib")) {
        for entry in dir.flatten() {
            candidates.push(entry.path().join("site-packages/onnx/onnx.proto"));
        }
    }
    candidates.into_iter().find(|p| p.is_file())
}

fn compile_shim() {
    const SOURCES: [&str; 3] = [
        "csrc/torchscript.cpp",
        "csrc/torchscript_graph.cpp",
        "csrc/torchscript_adaround.cpp",
    ];
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    let libtorch =
        PathBuf::from(std::env::var_os("LIBTORCH").expect(
            "LIBTORCH is not set: source scripts/env.sh (it points into the .venv's torch)",
        ));
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .files(SOURCES)
        .compile("qplay_torchscript");
    println!(
        "cargo:rustc-link-search=native={}",
        libtorch.join("lib").display()
    );
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

fn main() {
    compile_shim();
    println!("cargo:rerun-if-env-changed=ONNX_PROTO");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let proto = find_onnx_proto().expect(
        "onnx.proto not found: set ONNX_PROTO, or LIBTORCH to a site-packages/torch that has the \
         onnx package beside it (source scripts/env.sh after `make setup`)",
    );
    let proto = proto.canonicalize().expect("onnx.proto path");
    println!("cargo:rerun-if-changed={}", proto.display());
    let dir = proto.parent().expect("onnx.proto has a folder");
    let fds = protox::compile([&proto], [dir]).expect("compile onnx.proto");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("generate ONNX protobuf types");
}
