//! `qplay install`: writes the Jupyter kernelspec "qplay" ("Rust · qplay"), whose argv runs this
//! binary as `qplay kernel -f {connection_file}` with the environment the kernel and its evcxr
//! runtime need (library paths, `QPLAY_HOME`, the persistent build root `QPLAY_BUILD_DIR`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

/// Where to install the kernelspec (default: --user).
#[derive(Args)]
#[group(multiple = false)]
pub struct InstallArgs {
    /// Into the user's Jupyter data directory (~/.local/share/jupyter).
    #[arg(long)]
    user: bool,
    /// Into the active Python environment ($VIRTUAL_ENV, else the project's .venv).
    #[arg(long)]
    sys_prefix: bool,
    /// Into DIR/share/jupyter.
    #[arg(long, value_name = "DIR")]
    prefix: Option<PathBuf>,
}

const LOGO_SVG: &str = include_str!("../../assets/logo-svg.svg");
const LOGO_32: &[u8] = include_bytes!("../../assets/logo-32x32.png");
const LOGO_64: &[u8] = include_bytes!("../../assets/logo-64x64.png");

fn kernels_dir(args: &InstallArgs) -> Result<PathBuf> {
    let data_dir = if let Some(prefix) = &args.prefix {
        prefix.join("share/jupyter")
    } else if args.sys_prefix {
        let prefix = std::env::var_os("VIRTUAL_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| qplay::paths::root().join(".venv"));
        prefix.join("share/jupyter")
    } else {
        let home = std::env::var_os("HOME").context("HOME is not set; use --prefix DIR")?;
        std::env::var_os("JUPYTER_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(&home).join(".local/share/jupyter"))
    };
    Ok(data_dir.join("kernels"))
}

/// The environment the kernel runs with: what `scripts/env.sh` sets, resolved now.
fn kernel_env() -> Result<serde_json::Value> {
    let root = qplay::paths::root();
    let ort = qplay::paths::onnxruntime_library()
        .context("cannot find libonnxruntime.so: run `make setup` or set ORT_DYLIB_PATH")?;
    let mut env = json!({
        "QPLAY_HOME": root,
        "ORT_DYLIB_PATH": ort,
        "QPLAY_BUILD_DIR": crate::engine::slots::build_root(),
    });
    for var in [
        "LIBTORCH",
        "LD_LIBRARY_PATH",
        "PATH",
        "CARGO_HOME",
        "RUSTUP_HOME",
    ] {
        if let Some(value) = std::env::var_os(var) {
            env[var] = json!(value.to_string_lossy());
        }
    }
    if env.get("LIBTORCH").is_none() {
        bail!("LIBTORCH is not set: run `source scripts/env.sh` (or `make setup`) first");
    }
    Ok(env)
}

/// Writes the kernelspec and prints where.
pub fn run(args: InstallArgs) -> Result<()> {
    let dir = kernels_dir(&args)?.join("qplay");
    let exe = std::env::current_exe()?.canonicalize()?;
    let spec = json!({
        "argv": [exe, "kernel", "-f", "{connection_file}"],
        "display_name": "Rust · qplay",
        "language": "rust",
        "interrupt_mode": "message",
        "env": kernel_env()?,
        "metadata": {"debugger": false},
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join("kernel.json"),
        serde_json::to_string_pretty(&spec)? + "\n",
    )?;
    std::fs::write(dir.join("logo-svg.svg"), LOGO_SVG)?;
    std::fs::write(dir.join("logo-32x32.png"), LOGO_32)?;
    std::fs::write(dir.join("logo-64x64.png"), LOGO_64)?;
    super::print_out(&format!(
        "installed kernelspec qplay in {}\n",
        dir.display()
    ))
}
