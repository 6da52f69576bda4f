//! The persistent evaluation cache and the analyses built on it. Each test process uses its own
//! cache folder ($QPLAY_CACHE), set before anything reads it.

use std::sync::Once;

use qplay::data::{Bundled, Dataset};
use qplay::quant::{agreement, compare_models, sensitivity, sweep, workbench, Knob, Role};

fn setup() -> Dataset {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dir = std::env::temp_dir().join(format!("qplay-analysis-{}", std::process::id()));
        std::env::set_var("QPLAY_CACHE", dir);
    });
    Dataset::bundled(&qplay::paths::root(), Bundled::Lossless249).unwrap()
}

#[test]
fn a_repeated_evaluation_comes_from_the_cache_even_in_a_new_version_object() {
    let data = setup();
    let m = workbench("resnet8_int8").unwrap();
    let v = m.with_scale("activation_4", 0.3).unwrap();
    let first = v.quick(&data, 10).unwrap();
    // A new object with the same content (as after a kernel restart): same key, no model run.
    let again = workbench("resnet8_int8")
        .unwrap()
        .with_scale("activation_4", 0.3)
        .unwrap();
    assert_eq!(again.content_hash().unwrap(), v.content_hash().unwrap());
    let start = std::time::Instant::now();
    let second = again.quick(&data, 10).unwrap();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(first.predictions, second.predictions);
    let files = std::fs::read_dir(qplay::paths::cache_dir().join("evals"))
        .unwrap()
        .count();
    assert!(files >= 1);
    eprintln!(
        "cached quick(100): {ms:.2} ms (first run {:.1} ms)",
        first.seconds * 1e3
    );
    // Another selection is another key.
    assert_eq!(again.quick(&data, 5).unwrap().total(), 50);
}

/// A TorchScript version's cache key needs no serialization: version 0's is the file's sha256
/// (as for the registry's model of the file), an edited version's hashes its parent's key and
/// the exact values the edit wrote. The same edits give the same key in a new object (as after a
/// kernel restart); any other edit, another key.
#[test]
fn a_torch_version_is_cached_by_its_file_and_its_edits() {
    let data = setup();
    let m = workbench("resnet8_int8_torch").unwrap();
    let file = qplay::registry::resolve("resnet8_int8_torch").unwrap();
    assert_eq!(
        m.cache_key().unwrap(),
        qplay::quant::cache::file_hash(&file).unwrap()
    );
    let edit = |m: &qplay::quant::QuantModel, s: f32| {
        m.with_scale("dense", s)
            .unwrap()
            .with_bits("conv2d_1.weight", 4)
            .unwrap()
    };
    let v = edit(&m, 0.5);
    let again = edit(&workbench("resnet8_int8_torch").unwrap(), 0.5);
    assert_eq!(again.cache_key().unwrap(), v.cache_key().unwrap());
    for other in [
        edit(&m, 0.500_000_06),
        m.with_scale("dense", 0.5).unwrap(),
        m.with_bits("conv2d_1.weight", 4)
            .unwrap()
            .with_scale("dense", 0.5)
            .unwrap(),
    ] {
        assert_ne!(other.cache_key().unwrap(), v.cache_key().unwrap());
    }
    let s = sensitivity(&v, &data, 5, Knob::Bits(2), false).unwrap();
    assert_eq!(s.rows.len(), 10);
    let cached = sensitivity(&again, &data, 5, Knob::Bits(2), false).unwrap();
    assert!(cached.rows.iter().all(|r| r.cached));
    let drops = |s: &qplay::quant::Sensitivity| {
        let mut d: Vec<_> = s
            .rows
            .iter()
            .map(|r| (r.tensor.clone(), r.drop_pp))
            .collect();
        d.sort_by(|a, b| a.0.cmp(&b.0));
        d
    };
    assert_eq!(drops(&cached), drops(&s));
}

#[test]
fn sensitivity_sweeps_every_weight_and_caches_its_runs() {
    let data = setup();
    let m = workbench("resnet8_int8").unwrap();
    let s = sensitivity(&m, &data, 5, Knob::Bits(2), false).unwrap();
    assert_eq!(s.rows.len(), 10);
    assert!(s.rows.iter().all(|r| r.role == Role::Weight));
    assert!(s.rows.windows(2).all(|w| w[0].drop_pp >= w[1].drop_pp));
    assert!(
        s.rows[0].drop_pp > 0.0,
        "2-bit weights should cost accuracy somewhere"
    );
    let again = sensitivity(&m, &data, 5, Knob::Bits(2), false).unwrap();
    assert!(again.rows.iter().all(|r| r.cached));
    let p = sweep(
        &m,
        "activation_3",
        &[
            Knob::ScaleTimes(0.25),
            Knob::ScaleTimes(1.0),
            Knob::ScaleTimes(4.0),
        ],
        &data,
        5,
    )
    .unwrap();
    assert_eq!(p.points.len(), 3);
    assert!((p.points[1].1 - s.base_accuracy).abs() < 1e-12);
}

#[test]
fn onnx_and_torch_int8_agree_on_most_images() {
    let data = setup();
    let a = qplay::registry::load("resnet8_int8").unwrap();
    let b = qplay::registry::load("resnet8_int8_torch").unwrap();
    let indices: Vec<usize> = (0..data.len()).collect();
    let g = agreement(a.as_ref(), b.as_ref(), &data, &indices).unwrap();
    eprintln!("{g}");
    assert_eq!(g.images, data.len());
    assert!(g.agree as f64 / g.images as f64 > 0.85, "{g}");
    assert_eq!(g.a, a.name());
}

#[test]
fn the_comparison_table_has_accuracy_delta_and_size() {
    let data = setup();
    let c = compare_models(
        "resnet8_float",
        &[
            "resnet8_int8",
            "resnet8_int8_perchannel",
            "resnet8_int8_torch",
        ],
        &data,
        None,
    )
    .unwrap();
    assert_eq!(c.rows.len(), 4);
    assert_eq!(c.rows[0].delta_pp, 0.0);
    // MODELS.md: float 213/249, int8 215/249 on the lossless subset.
    assert_eq!(c.evaluations[0].correct(), 213);
    assert_eq!(c.evaluations[1].correct(), 215);
    assert!(c.rows[1].bytes < c.rows[0].bytes);
    eprintln!("{c}");
}
