//! Embeds libtorch's library folder as an rpath, so `qplay` runs without LD_LIBRARY_PATH (the
//! folder comes from `$LIBTORCH`, set by scripts/env.sh to the venv's `torch` package), and
//! exports the process-state slots and the interrupt flag that notebook cells look up with dlsym
//! (`qplay::process`, `qplay::interrupt`).

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol=QPLAY_PROCESS_SLOTS");
    println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol=QPLAY_INTERRUPT");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{libtorch}/lib");
    }
}
