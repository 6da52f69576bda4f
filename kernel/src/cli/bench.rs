//! `qplay bench`: measurements of qplay side by side with a reference measured in the same run.
//!
//! `qplay bench eval` times a full evaluation of each bundled model on the 10,000-image test set
//! and the same evaluation by Python onnxruntime / torch (`scripts/reference.py`), with the same
//! batch size and thread count, and prints a Markdown table for BENCHMARKS.md. `qplay bench
//! kernel`, `qplay bench reactive` and `qplay bench startup` drive kernels from Python scripts
//! (jupyter_client, nbconvert).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use qplay::data::{Bundled, Dataset};
use qplay::eval::{evaluate, EvalOptions};

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Full 10k evaluation per model: qplay vs Python onnxruntime / torch.
    Eval(EvalBench),
    /// Kernel start → first result and per-cell latency: qplay vs evcxr_jupyter.
    Kernel(KernelBench),
    /// Widget update → rerun output, live views, memory: qplay vs ipykernel + ipywidgets.
    Reactive(ReactiveBench),
    /// Calibrating the float model: qplay vs onnxruntime's quantize_static, same options.
    Calibrate(CalibrateBench),
    /// Opening a notebook: first result, Run All of the playground, an edited cell, memory (PSS).
    Startup(StartupBench),
    /// Drawing a model's graph: layout, SVG, recolouring; ResNet-8 and a graph 10× larger.
    Graph(super::bench_graph::GraphBench),
    /// Learned rounding: AdaRound beside nearest rounding and CLE + bias correction, accuracy
    /// on the test set and seconds.
    Adaround(super::bench_adaround::AdaRoundBench),
}

/// Arguments of `qplay bench startup`.
#[derive(Args)]
pub struct StartupBench {
    /// Timed kernel starts and Run Alls per kernel; medians are reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Late playground cells edited and run by hand.
    #[arg(long, default_value_t = 6)]
    edits: usize,
    /// evcxr_jupyter to compare first results with, if installed (`cargo install evcxr_jupyter
    /// --version 0.22.0 --locked --root .bench/evcxr`).
    #[arg(long, default_value = ".bench/evcxr/bin/evcxr_jupyter")]
    evcxr_jupyter: PathBuf,
    /// Python interpreter with jupyter_client, nbconvert and ipykernel (default: the project's .venv).
    #[arg(long)]
    python: Option<PathBuf>,
}

/// Arguments of `qplay bench calibrate`.
#[derive(Args)]
pub struct CalibrateBench {
    /// Methods to time (each also per channel).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "minmax,percentile:99.999,entropy"
    )]
    methods: Vec<String>,
    /// Calibration images per class.
    #[arg(long, default_value_t = 100)]
    per_class: usize,
    /// Timed rounds per row (one run of each side per round); medians are reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Python interpreter with onnxruntime (default: the project's .venv).
    #[arg(long)]
    python: Option<PathBuf>,
}

/// Arguments of `qplay bench reactive`.
#[derive(Args)]
pub struct ReactiveBench {
    /// Timed wrapped reruns of the small dependent cell (and `observe` callbacks).
    #[arg(long, default_value_t = 200)]
    reruns: usize,
    /// Timed reruns of the same cell with wrapping off (compiled each time).
    #[arg(long, default_value_t = 10)]
    compiled_reruns: usize,
    /// Timed live-view updates.
    #[arg(long, default_value_t = 100)]
    lives: usize,
    /// Live-view updates across which memory growth is measured.
    #[arg(long, default_value_t = 500)]
    memory_updates: usize,
    /// Timed moves of the playground's scale slider (memory is measured across them).
    #[arg(long, default_value_t = 1000)]
    playground_moves: usize,
    /// The same with wrapping off.
    #[arg(long, default_value_t = 10)]
    compiled_moves: usize,
    /// Another kernel spec to measure beside this build in the same run (e.g. a build of the
    /// commit before a change): its wrapped reruns of the small cell and moves of the playground
    /// of the checkout it runs from.
    #[arg(long, value_name = "KERNEL_SPEC")]
    reference_kernel: Option<String>,
    /// Python interpreter with jupyter_client and ipykernel (default: the project's .venv).
    #[arg(long)]
    python: Option<PathBuf>,
}

/// Arguments of `qplay bench kernel`.
#[derive(Args)]
pub struct KernelBench {
    /// The evcxr_jupyter binary to compare with (`cargo install evcxr_jupyter`).
    #[arg(long, default_value = ".bench/evcxr/bin/evcxr_jupyter")]
    evcxr_jupyter: PathBuf,
    /// Timed repetitions of each cell; medians are reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Python interpreter with jupyter_client (default: the project's .venv).
    #[arg(long)]
    python: Option<PathBuf>,
}

/// Arguments of `qplay bench eval`.
#[derive(Args)]
pub struct EvalBench {
    /// Models to measure (default: every bundled model).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Timed rounds per model (one run of each side per round); medians are reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Images per model call, on both sides.
    #[arg(long, default_value_t = qplay::eval::DEFAULT_BATCH)]
    batch_size: usize,
    /// Python interpreter with onnxruntime and torch (default: the project's .venv).
    #[arg(long)]
    python: Option<PathBuf>,
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Eval(args) => bench_eval(args),
        BenchCommand::Kernel(args) => bench_kernel(args),
        BenchCommand::Reactive(args) => bench_reactive(args),
        BenchCommand::Calibrate(args) => bench_calibrate(args),
        BenchCommand::Startup(args) => bench_startup(args),
        BenchCommand::Graph(args) => super::bench_graph::run(args),
        BenchCommand::Adaround(args) => super::bench_adaround::run(args),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The project root and the Python to compare with (the project's .venv unless given), after
/// checking that there is at least one round.
fn setup(repeats: usize, python: Option<PathBuf>) -> Result<(PathBuf, PathBuf)> {
    if repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let root = qplay::paths::root();
    let python = python.unwrap_or_else(|| root.join(".venv").join("bin").join("python"));
    Ok((root, python))
}

fn bench_eval(args: EvalBench) -> Result<()> {
    let (root, python) = setup(args.repeats, args.python)?;
    let data = Dataset::bundled(&root, Bundled::Test)?;
    let data_file = root.join("data/cifar10/test_batch_jpeg75.bin");
    let threads = qplay::onnx::thread_count();
    let models = if args.models.is_empty() {
        qplay::registry::available()
    } else {
        args.models
    };
    super::print_out(&format!(
        "Full evaluation on {}, batch {}, {} threads, median of {} interleaved rounds.\n\n",
        data.description(),
        args.batch_size,
        threads,
        args.repeats
    ))?;
    super::print_out(
        "| model | reference | qplay s | reference s | ratio | qplay acc. | reference acc. |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    )?;
    for name in models {
        let model = qplay::registry::load(&name)?;
        let options = EvalOptions {
            batch_size: args.batch_size,
            progress: None,
        };
        let warm: Vec<usize> = (0..args.batch_size.min(data.len())).collect();
        model.run(data.nhwc_batch(&warm).view())?;
        // Interleave the two sides, one run each per round, so that drift in the machine's speed
        // (these are shared 2-core machines) hits both alike.
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut accuracy = 0.0;
        let mut reference = serde_json::Value::Null;
        for _ in 0..args.repeats {
            let result = evaluate(model.as_ref(), &data, &options)?;
            ours.push(result.seconds);
            accuracy = result.accuracy();
            reference = run_reference(
                &python,
                &root,
                model.path(),
                &data_file,
                args.batch_size,
                threads,
            )?;
            theirs.push(reference["seconds"].as_f64().unwrap_or(f64::NAN));
        }
        let (ours, theirs) = (median(ours), median(theirs));
        super::print_out(&format!(
            "| {} | {} | {:.3} | {:.3} | {:.2} | {:.2} % | {:.2} % |\n",
            name,
            reference["framework"].as_str().unwrap_or("?"),
            ours,
            theirs,
            ours / theirs,
            100.0 * accuracy,
            100.0 * reference["accuracy"].as_f64().unwrap_or(f64::NAN)
        ))?;
    }
    Ok(())
}

fn bench_calibrate(args: CalibrateBench) -> Result<()> {
    use qplay::quant::calibrate::{cache, calibrate_with, CalibOptions, Method};
    let (root, python) = setup(args.repeats, args.python)?;
    let data = Dataset::bundled(&root, Bundled::Train4000)?;
    let data_file = root.join("data/cifar10/train_first4000_lossless.bin");
    let float = root.join("models/resnet8_float.onnx");
    let scratch = tempfile::tempdir()?;
    super::print_out(&format!(
        "Calibrating models/resnet8_float.onnx on {} training images (int8, asymmetric \
         activations), from scratch each time (qplay's statistics cache cleared), median of {} \
         interleaved rounds; onnxruntime's `quantize_static` in Python with the same options. \
         \"same\": every scale and zero point of the two models agree (scales to 1e-6 \
         relative). \"again\": qplay once more with its statistics kept.\n\n",
        10 * args.per_class,
        args.repeats
    ))?;
    super::print_out(
        "| method | weights | qplay s | quantize_static s | ratio | same | qplay again s |\n\
         |---|---|---:|---:|---:|---|---:|\n",
    )?;
    for method in &args.methods {
        for per_channel in [false, true] {
            let options = CalibOptions {
                method: method.parse::<Method>()?,
                per_channel,
                per_class: args.per_class,
                ..Default::default()
            };
            let out = scratch.path().join("reference.onnx");
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            let mut model = None;
            for _ in 0..args.repeats {
                cache::forget();
                let start = Instant::now();
                model = Some(calibrate_with(
                    float.to_str().unwrap_or_default(),
                    &data,
                    &options,
                    None,
                )?);
                ours.push(start.elapsed().as_secs_f64());
                let mut script_args: Vec<String> = vec![
                    "--float".into(),
                    float.display().to_string(),
                    "--out".into(),
                    out.display().to_string(),
                    "--data".into(),
                    data_file.display().to_string(),
                    "--method".into(),
                    method.clone(),
                    "--per-class".into(),
                    args.per_class.to_string(),
                ];
                if per_channel {
                    script_args.push("--per-channel".into());
                }
                let answer = python_json(
                    Some(python.clone()),
                    "scripts/calibrate_reference.py",
                    &script_args,
                )?;
                theirs.push(answer["seconds"].as_f64().unwrap_or(f64::NAN));
            }
            // Once more with the statistics kept: what trying another option costs.
            let start = Instant::now();
            calibrate_with(float.to_str().unwrap_or_default(), &data, &options, None)?;
            let again = start.elapsed().as_secs_f64();
            let ours_model = model.expect("at least one round");
            let reference = qplay::quant::workbench(out.to_str().unwrap_or_default())?;
            let same = same_params(&ours_model, &reference);
            let (ours, theirs) = (median(ours), median(theirs));
            super::print_out(&format!(
                "| {method} | {} | {ours:.3} | {theirs:.3} | {:.2} | {same} | {again:.3} |\n",
                if per_channel {
                    "per channel"
                } else {
                    "per tensor"
                },
                ours / theirs
            ))?;
        }
    }
    Ok(())
}

/// "yes" when every scale (to 1e-6 relative) and zero point of `a` equals `b`'s, else what
/// differs first.
fn same_params(a: &qplay::quant::QuantModel, b: &qplay::quant::QuantModel) -> String {
    let pb = b.quant_params();
    if a.quant_params().rows.len() != pb.rows.len() {
        return "no: different tensors".into();
    }
    for r in &pb.rows {
        let Ok(o) = a.param(&r.tensor) else {
            return format!("no: `{}` missing", r.tensor);
        };
        let close = o.scales.len() == r.scales.len()
            && o.scales
                .iter()
                .zip(&r.scales)
                .all(|(x, y)| ((x - y) / y).abs() <= 1e-6);
        if !close || o.zero_points != r.zero_points {
            return format!("no: `{}`", r.tensor);
        }
    }
    "yes".into()
}

/// Times one full evaluation with `scripts/reference.py` (after its own warm-up run).
fn run_reference(
    python: &Path,
    root: &Path,
    model: &Path,
    data: &Path,
    batch_size: usize,
    threads: usize,
) -> Result<serde_json::Value> {
    let output = Command::new(python)
        .arg(root.join("scripts/reference.py"))
        .arg("bench")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(data)
        .args(["--batch-size", &batch_size.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--repeats", "1"])
        .output()
        .with_context(|| format!("cannot run the Python reference {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "Python reference failed for {}: {}",
            model.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("Python reference printed no JSON")
}

fn bench_kernel(args: KernelBench) -> Result<()> {
    let root = qplay::paths::root();
    let evcxr = root.join(&args.evcxr_jupyter);
    if !evcxr.is_file() {
        bail!(
            "evcxr_jupyter not found at {}; install it with `cargo install evcxr_jupyter \
             --version 0.22.0 --locked --root .bench/evcxr`",
            evcxr.display()
        );
    }
    let r = python_json(
        args.python,
        "scripts/bench_kernel.py",
        &[
            format!("--evcxr-jupyter={}", evcxr.display()),
            format!("--repeats={}", args.repeats),
        ],
    )?;
    let (q, e) = (&r["qplay"], &r["evcxr_bench"]);
    let mut text = format!(
        "Kernel latency, median of {} cells each, both build directories warm.\n\n\
         | measure | qplay s | evcxr_jupyter s | ratio |\n|---|---:|---:|---:|\n",
        args.repeats
    );
    for (key, label) in [
        (
            "first_result_s",
            "kernel start → prelude in scope → first result",
        ),
        ("trivial_s", "trivial cell `1 + 1`"),
        ("prelude_call_s", "prelude call `load(\"resnet8_int8\")…`"),
    ] {
        let (a, b) = (
            q[key].as_f64().unwrap_or(f64::NAN),
            e[key].as_f64().unwrap_or(f64::NAN),
        );
        text += &format!("| {label} | {a:.2} | {b:.2} | {:.2} |\n", a / b);
    }
    super::print_out(&text)
}

fn bench_startup(args: StartupBench) -> Result<()> {
    let (root, python) = setup(args.repeats, args.python)?;
    let evcxr = root.join(&args.evcxr_jupyter);
    let mut script_args = vec![
        format!("--repeats={}", args.repeats),
        format!("--edits={}", args.edits),
    ];
    if evcxr.is_file() {
        script_args.push(format!("--evcxr-jupyter={}", evcxr.display()));
    }
    let r = python_json(Some(python), "scripts/bench_startup.py", &script_args)?;
    let seconds = |v: &serde_json::Value| -> Option<f64> {
        let xs: Vec<f64> = v.as_array()?.iter().filter_map(|x| x.as_f64()).collect();
        (!xs.is_empty()).then(|| median(xs))
    };
    let s = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{x:.2} s"));
    let mib = |v: &serde_json::Value| v.as_f64().map_or("–".to_string(), |m| format!("{m:.0}"));
    let pg = &r["playground"];
    let mut text = format!(
        "Opening a notebook, medians of {} (edited cells: {}).\n\n\
         | what the user waits for | qplay | reference, same run |\n|---|---:|---:|\n",
        args.repeats, args.edits
    );
    text += &format!(
        "| kernel spawned → result of `1 + 1` | {} | ipykernel {}; evcxr_jupyter {} |\n",
        s(seconds(&r["qplay_first_result_s"])),
        s(seconds(&r["ipykernel_first_result_s"])),
        s(seconds(&r["evcxr_first_result_s"]))
    );
    text += &format!(
        "| the playground, Run All (nbconvert, spawn → last output), results kept (as after \
         set-up) | {} | nbconvert + ipykernel, as many trivial cells: {} |\n\
         | the same, nothing kept (every cell compiled, types inferred) | {} | |\n",
        s(seconds(&r["qplay_run_all_s"])),
        s(seconds(&r["ipykernel_run_all_s"])),
        s(seconds(&r["qplay_run_all_cold_s"]))
    );
    text += &format!(
        "| a late playground cell edited and run by hand (request → reply; the summary and the \
         diff) | {} | ipykernel `1 + 1`: {} |\n\
         | the same for the agreement cell (1,000 images through two models) | {} | |\n",
        s(seconds(&pg["edited_cell_s"])),
        s(seconds(&r["ipykernel_cell_s"])),
        s(seconds(&pg["edited_work_cell_s"]))
    );
    text += &format!(
        "\n| memory of the kernel and its children, MiB | PSS | RSS |\n|---|---:|---:|\n\
         | after `1 + 1` | {} | {} |\n| after the playground | {} | {} |\n\
         | two notebooks, each after the playground | {} | {} |\n\
         | the first, after the hand edits (rust-analyzer loaded) | {} | {} |\n",
        mib(&pg["after_start_pss_mib"]),
        mib(&pg["after_start_rss_mib"]),
        mib(&pg["after_playground_pss_mib"]),
        mib(&pg["after_playground_rss_mib"]),
        mib(&pg["two_notebooks_pss_mib"]),
        mib(&pg["two_notebooks_rss_mib"]),
        mib(&pg["after_edits_pss_mib"]),
        mib(&pg["after_edits_rss_mib"])
    );
    super::print_out(&text)
}

/// Runs `script` with the project's Python and parses the JSON it prints.
fn python_json(
    python: Option<PathBuf>,
    script: &str,
    args: &[String],
) -> Result<serde_json::Value> {
    let root = qplay::paths::root();
    let python = python.unwrap_or_else(|| root.join(".venv").join("bin").join("python"));
    let output = Command::new(&python)
        .arg(root.join(script))
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !output.status.success() {
        bail!("{script} failed (see above)");
    }
    serde_json::from_slice(&output.stdout).with_context(|| format!("{script} printed no JSON"))
}

fn bench_reactive(args: ReactiveBench) -> Result<()> {
    let mut script_args = vec![
        format!("--reruns={}", args.reruns),
        format!("--compiled-reruns={}", args.compiled_reruns),
        format!("--lives={}", args.lives),
        format!("--memory-updates={}", args.memory_updates),
        format!("--playground-moves={}", args.playground_moves),
        format!("--compiled-moves={}", args.compiled_moves),
    ];
    if let Some(name) = &args.reference_kernel {
        script_args.push(format!("--reference-kernel={name}"));
    }
    let r = python_json(args.python, "scripts/bench_reactive.py", &script_args)?;
    let ms = |v: &serde_json::Value| {
        v.as_f64()
            .map_or("–".to_string(), |s| format!("{:.0}", s * 1e3))
    };
    let mib = |v: &serde_json::Value| v.as_f64().map_or("–".to_string(), |m| format!("{m:.1}"));
    let p50_95 =
        |v: &serde_json::Value| format!("{} / {} (n = {})", ms(&v["p50"]), ms(&v["p95"]), v["n"]);
    let (small, live, pg) = (&r["small"], &r["live"], &r["playground"]);
    let mut text = String::from(
        "Widget update (a `comm_msg` sent as the browser sends it) → the output it causes on \
         IOPub; p50 / p95 in ms.\n\n| measure | qplay | reference, same run |\n|---|---:|---:|\n",
    );
    text += &format!(
        "| small dependent cell rerun: wrapped / compiled (`QPLAY_WRAP=0`) | {} | {} |\n",
        p50_95(&small["wrapped"]),
        p50_95(&small["compiled"])
    );
    text += &format!(
        "| small dependent cell rerun: wrapped / ipykernel `observe` callback | {} | {} |\n",
        p50_95(&small["wrapped"]),
        p50_95(&small["ipykernel"])
    );
    text += &format!(
        "| live view (`live`) / ipykernel `observe` callback | {} | {} |\n",
        p50_95(&live["qplay"]),
        p50_95(&live["ipykernel"])
    );
    for (row, key) in [
        ("first output of the edit cell", "first_s"),
        ("new quick evaluation shown", "quick_s"),
        ("every dependent cell redrawn", "done_s"),
        (
            "new quick evaluation shown, a value not seen before",
            "fresh_quick_s",
        ),
        (
            "every dependent cell redrawn, a value not seen before",
            "fresh_done_s",
        ),
    ] {
        text += &format!(
            "| playground scale slider → {row}: wrapped / compiled | {} | {} |\n",
            p50_95(&pg["wrapped"][key]),
            p50_95(&pg["compiled"][key])
        );
    }
    text += &format!(
        "| RSS growth over {} playground moves (after 3 to warm up), MiB: wrapped / compiled \
         over {} | {} | {} |\n",
        pg["wrapped"]["moves"],
        pg["compiled"]["moves"],
        mib(&pg["wrapped"]["rss_growth_mib"]),
        mib(&pg["compiled"]["rss_growth_mib"])
    );
    text += &format!(
        "| RSS growth over {} live-view updates, MiB: qplay / ipykernel | {} | {} |\n",
        live["updates"],
        mib(&live["qplay_rss_growth_mib"]),
        mib(&live["ipykernel_rss_growth_mib"])
    );
    text += &format!(
        "| RSS after the playground moves (kernel + runtime), MiB: wrapped / compiled | {} | {} |\n",
        mib(&pg["wrapped"]["rss_mib"]),
        mib(&pg["compiled"]["rss_mib"])
    );
    let reference = &r["reference_kernel"];
    if let Some(name) = reference["name"].as_str() {
        text += &format!(
            "| small dependent cell rerun, wrapped: this build / kernel `{name}` | {} | {} |\n",
            p50_95(&small["wrapped"]),
            p50_95(&reference["small"])
        );
        for (row, key) in [
            ("first output of the edit cell", "first_s"),
            ("every dependent cell redrawn", "done_s"),
            (
                "every dependent cell redrawn, a value not seen before",
                "fresh_done_s",
            ),
        ] {
            text += &format!(
                "| playground scale slider → {row}, wrapped: this build / kernel `{name}` | {} \
                 | {} |\n",
                p50_95(&pg["wrapped"][key]),
                p50_95(&reference["playground"][key])
            );
        }
    }
    super::print_out(&text)
}
