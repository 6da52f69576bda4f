//! The playground's edit cell (notebooks/playground.ipynb, cell f8cc22de) in a loop, timed step
//! by step: each iteration is one slider move, a new version of the model with another scale
//! factor, then the cell's quick evaluation, histogram and per-layer SQNR, each displayed
//! (rendered into the message the kernel would get, then dropped).
//!
//! ```text
//! cargo run --release -p qplay --example edit_loop -- [ITERATIONS] [MODEL] [LAYER] [IMAGES]
//! ```
//!
//! ITERATIONS defaults to 30, MODEL to resnet8_int8, LAYER to the cell's default (the fourth
//! activation), IMAGES (the histogram's batch: the first IMAGES test images) to the cell's 100,
//! the images of the per-layer SQNR. Prints per-step p50/p95 (ms) after a warm-up of 3 moves,
//! and the resident set (VmRSS) at the start, after the warm-up, every 100 moves and at the end.
//! The evaluation cache lives in a fresh temporary folder (unless $QPLAY_CACHE is set), so every
//! new scale value is uncached, as in a notebook session.

use std::time::Instant;

use anyhow::Result;
use qplay::display::Rich;
use qplay::prelude::*;
use qplay::runtime::protocol::FromRuntime;

const WARM_UP: usize = 3;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// What `display()` costs besides writing the line: the bundle and its JSON line.
fn shown<T: Rich + ?Sized>(value: &T) -> usize {
    FromRuntime::Display {
        data: value.mime_bundle(),
        display_id: "x".into(),
    }
    .line()
    .len()
}

/// Per-step times of one move, ms.
#[derive(Default)]
struct Steps {
    version: f64,
    quick: f64,
    histogram: f64,
    sqnr: f64,
    total: f64,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let iterations: usize = args.first().map_or(Ok(30), |a| a.parse())?;
    let model = args.get(1).map_or("resnet8_int8", String::as_str);
    if std::env::var_os("QPLAY_CACHE").is_none() {
        let dir = std::env::temp_dir().join(format!("qplay-edit-loop-{}", std::process::id()));
        std::env::set_var("QPLAY_CACHE", &dir);
    }

    // Cell 04ebb3fa and 605b3002 / 8af7dfc1: data, float model, the model, the layer.
    let test = Dataset::bundled(&qplay::paths::root(), Bundled::Test)?;
    let float = workbench("resnet8_float")?;
    let m = workbench(model)?;
    let layers: Vec<String> = m
        .quant_params()
        .rows
        .iter()
        .filter(|r| r.role == Role::Activation)
        .map(|r| r.tensor.clone())
        .collect();
    let layer = match args.get(2).filter(|l| !l.is_empty()) {
        Some(l) => l.clone(),
        None => layers[layers.len().min(4) - 1].clone(),
    };
    let images: usize = args.get(3).map_or(Ok(100), |a| a.parse())?;
    let rss_start = rss_mib();
    println!(
        "edit loop: {iterations} moves of `{layer}` in {model} (+{WARM_UP} warm-up), histogram \
         on {images} images, QPLAY_THREADS={}, cache {}",
        qplay::onnx::thread_count(),
        qplay::paths::cache_dir().display()
    );

    let mut steps: Vec<Steps> = Vec::new();
    let mut rss_warm = f64::NAN;
    let mut rss_every_100 = Vec::new();
    let mut bytes = 0usize;
    for i in 0..WARM_UP + iterations {
        if i == WARM_UP {
            rss_warm = rss_mib();
        }
        // A new scale factor every move (uncached), and the zero-point shift moving too.
        let k = 0.5 + 0.75 * ((i * 7919) % 1000) as f64 / 1000.0 + 1e-4 * (i / 1000) as f64;
        let shift = (i % 5) as i64 - 2;
        let mut s = Steps::default();
        let start = Instant::now();
        let lap = |t: &mut f64, since: &mut Instant| {
            let now = Instant::now();
            *t = (now - *since).as_secs_f64() * 1e3;
            *since = now;
        };
        let mut since = start;

        // Cell f8cc22de, as written in the notebook.
        let p = m.param(&layer)?.clone();
        let (lo, hi) = p.dtype.range();
        let zp = (p.zero_points[0] as i64 + shift).clamp(lo, hi) as i32;
        let v = m
            .with_scale(&p.tensor, p.scales[0] * k as f32)?
            .with_zero_point(&p.tensor, zp)?;
        let line = format!(
            "{}: scale {} → {}, zero point {} → {}",
            p.tensor,
            p.scales[0],
            p.scales[0] * k as f32,
            p.zero_points[0],
            zp
        );
        bytes += line.len();
        lap(&mut s.version, &mut since);
        bytes += shown(&v.quick(&test, 20)?);
        lap(&mut s.quick, &mut since);
        bytes += shown(&tensor_histogram(
            &v,
            &p.tensor,
            Some(test.nhwc_batch(&(0..images).collect::<Vec<_>>()).view()),
            0,
        )?);
        lap(&mut s.histogram, &mut since);
        if m.framework() == Framework::Onnx {
            bytes += shown(&sqnr_chart(&layer_errors(
                &float,
                &v,
                &test,
                &(0..100).collect::<Vec<_>>(),
            )?)?);
        }
        lap(&mut s.sqnr, &mut since);
        s.total = start.elapsed().as_secs_f64() * 1e3;
        drop(v);
        if i >= WARM_UP {
            steps.push(s);
            if steps.len().is_multiple_of(100) {
                rss_every_100.push(format!("{:.0}", rss_mib()));
            }
        }
    }
    let rss_end = rss_mib();

    let pct = |get: fn(&Steps) -> f64, q: f64| {
        let mut v: Vec<f64> = steps.iter().map(get).collect();
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    type Get = fn(&Steps) -> f64;
    let rows: [(&str, Get); 5] = [
        ("version", |s| s.version),
        ("quick(20/class)", |s| s.quick),
        ("histogram", |s| s.histogram),
        ("SQNR", |s| s.sqnr),
        ("whole cell", |s| s.total),
    ];
    println!("{:<18} {:>9} {:>9}", "step", "p50 ms", "p95 ms");
    for (name, get) in rows {
        println!("{name:<18} {:>9.1} {:>9.1}", pct(get, 0.5), pct(get, 0.95));
    }
    println!(
        "RSS MiB: start {rss_start:.1}, after warm-up {rss_warm:.1}, end {rss_end:.1} \
         (end − warm-up {:+.1}); {} KiB of output per move",
        rss_end - rss_warm,
        bytes / (WARM_UP + iterations) / 1024
    );
    if !rss_every_100.is_empty() {
        println!("RSS MiB every 100 moves: {}", rss_every_100.join(" "));
    }
    Ok(())
}
