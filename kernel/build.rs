//! Embeds libtorch's library folder as an rpath, so `qplay` runs without LD_LIBRARY_PATH.
//! The folder comes from `$LIBTORCH` (set by the Makefile to the venv's `torch` package).

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{libtorch}/lib");
    }
}
