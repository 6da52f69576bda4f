//! The persistent evaluation cache and the analyses built on it. Each test process uses its own
//! cache folder ($QPLAY_CACHE), set before anything reads it.

mod common;

use qplay::data::{Bundled, Dataset};
use qplay::eval::{EvalOptions, Evaluation};
use qplay::quant::cache::{self, Store};
use qplay::quant::{
    agreement, compare_models, sensitivity, sweep, workbench, Knob, QuantModel, Role,
};

use common::dataset;

/// Quick evaluations are kept in memory, not on disk: a new version object with the same content
/// (as after re-running the cell that made it) finds the result without running the model, and
/// no file is written. A full evaluation is written to disk too.
/// An evaluation kept in memory only, and whether it came from the cache.
fn remembered(m: &QuantModel, hash: &str, data: &Dataset, indices: &[usize]) -> (Evaluation, bool) {
    let options = EvalOptions::default();
    cache::evaluate_cached(m, hash, data, indices, true, &options, Store::Memory).unwrap()
}

#[test]
fn a_repeated_evaluation_comes_from_the_cache_even_in_a_new_version_object() {
    let data = dataset(Bundled::Lossless249);
    let m = workbench("resnet8_int8").unwrap();
    let v = m.with_scale("activation_4", 0.3).unwrap();
    let first = v.quick(&data, 10).unwrap();
    let indices = data.stratified(10).unwrap();
    let file = |hash: &str, indices: &[usize]| {
        qplay::paths::cache_dir()
            .join("evals")
            .join(format!("{}.json", cache::key(hash, &data, indices)))
    };
    let hash = v.content_hash().unwrap();
    assert!(
        !file(&hash, &indices).exists(),
        "a quick evaluation wrote a file"
    );
    // A new object with the same content: same key, and the result is already there.
    let again = workbench("resnet8_int8")
        .unwrap()
        .with_scale("activation_4", 0.3)
        .unwrap();
    assert_eq!(again.content_hash().unwrap(), hash);
    let (found, cached) = remembered(&again, &hash, &data, &indices);
    assert!(cached);
    assert_eq!(found.predictions, first.predictions);
    let second = again.quick(&data, 10).unwrap();
    assert_eq!(first.predictions, second.predictions);
    assert!(!file(&hash, &indices).exists());
    eprintln!(
        "cached quick(100): {:.2} ms (first run {:.1} ms)",
        second.seconds * 1e3,
        first.seconds * 1e3
    );
    // Another selection is another key.
    assert_eq!(again.quick(&data, 5).unwrap().total(), 50);
    // A full evaluation goes to disk.
    let full = again.evaluate(&data).unwrap();
    let all: Vec<usize> = (0..data.len()).collect();
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file(&hash, &all)).unwrap()).unwrap();
    let stored: Vec<u8> = serde_json::from_value(stored["predictions"].clone()).unwrap();
    assert_eq!(stored, full.predictions);
}

/// The in-memory level is bounded: many quick evaluations (as many slider moves) leave at most
/// `RECENT_ENTRIES` results.
#[test]
fn the_in_memory_results_are_bounded() {
    let data = dataset(Bundled::Lossless249);
    let m = workbench("resnet8_int8").unwrap();
    let indices = [0usize];
    for i in 0..cache::RECENT_ENTRIES + 50 {
        // Distinct keys without distinct models: the model hash is only a key.
        remembered(&m, &format!("bounded-{i}"), &data, &indices);
        assert!(cache::recent_len() <= cache::RECENT_ENTRIES);
    }
    assert_eq!(cache::recent_len(), cache::RECENT_ENTRIES);
}

/// A TorchScript version's cache key needs no serialization: version 0's is the file's sha256
/// (as for the registry's model of the file), an edited version's hashes its parent's key and
/// the exact values the edit wrote. The same edits give the same key in a new object (as after a
/// kernel restart); any other edit, another key.
#[test]
fn a_torch_version_is_cached_by_its_file_and_its_edits() {
    let data = dataset(Bundled::Lossless249);
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
    let data = dataset(Bundled::Lossless249);
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
    let data = dataset(Bundled::Lossless249);
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
    let data = dataset(Bundled::Lossless249);
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
