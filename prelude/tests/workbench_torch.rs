//! The quantization workbench on quantized TorchScript: the bundled FX int8 model and, where it
//! exists, the seed project's model.

mod common;

use std::path::PathBuf;

use ndarray::Axis;
use qplay::data::{Bundled, Dataset};
use qplay::eval::quick;
use qplay::model::{Framework, Model};
use qplay::quant::{workbench, QDtype, QuantModel, Role};

/// The seed project's quantized TorchScript, which lives beside the project, not in it:
/// `<project root>/../shared/data/models/seed_project_pytorch/resnet8_int8.pt`.
fn seed_model() -> PathBuf {
    qplay::paths::root().join("../shared/data/models/seed_project_pytorch/resnet8_int8.pt")
}

fn data() -> Dataset {
    Dataset::bundled(&qplay::paths::root(), Bundled::Lossless249).unwrap()
}

fn batch() -> ndarray::Array4<f32> {
    data().nhwc_batch(&(0..16).collect::<Vec<_>>())
}

/// log p_i − log p_0 per image: the dense layer's dequantized outputs up to a constant per row
/// (the softmax is float and last).
fn logit_differences(m: &QuantModel) -> ndarray::Array2<f64> {
    let p = m.run(batch().view()).unwrap().mapv(|v| (v as f64).ln());
    let first = p.column(0).to_owned().insert_axis(Axis(1));
    &p - &first
}

#[test]
fn inspect_lists_packed_weights_and_activation_operands() {
    let m = workbench("resnet8_int8_torch").unwrap();
    assert_eq!(m.framework(), Framework::Torch);
    let p = m.quant_params();
    assert_eq!(p.count(Role::Weight), 10);
    assert_eq!(p.count(Role::Activation), 16);
    let w = m.param("conv2d_1.weight").unwrap();
    assert_eq!(
        (w.dtype, w.axis, w.scales.len()),
        (QDtype::Int8, Some(0), 16)
    );
    let weights = m.weights("conv2d_1.weight").unwrap();
    assert_eq!(weights.int.shape(), &[16, 16, 3, 3]);
    let dense = m.param("dense").unwrap();
    assert_eq!(dense.role, Role::Activation);
    assert_eq!(p.to_json().as_array().unwrap().len(), 26);
}

#[test]
fn version_zero_predicts_exactly_as_the_registry_model() {
    let v = workbench("resnet8_int8_torch").unwrap();
    let registry = qplay::registry::load("resnet8_int8_torch").unwrap();
    let data = data();
    assert_eq!(
        quick(&v, &data, 10).unwrap().predictions,
        quick(registry.as_ref(), &data, 10).unwrap().predictions
    );
}

#[test]
fn doubling_the_dense_output_scale_puts_the_logits_on_the_doubled_grid() {
    let m = workbench("resnet8_int8_torch").unwrap();
    let s = m.param("dense").unwrap().scales[0] as f64;
    let v = m.with_scale("dense", (2.0 * s) as f32).unwrap();
    assert_eq!(
        m.param("dense").unwrap().scales[0] as f64,
        s,
        "original changed"
    );
    let on_grid = |d: &ndarray::Array2<f64>, step: f64| {
        d.iter()
            .all(|x| ((x / step) - (x / step).round()).abs() < 1e-3)
    };
    let (a, b) = (logit_differences(&m), logit_differences(&v));
    assert!(on_grid(&a, s) && !on_grid(&a, 2.0 * s));
    assert!(
        on_grid(&b, 2.0 * s),
        "logits of the edited model are not on the 2s grid"
    );
}

#[test]
fn weight_edits_change_the_logits_as_predicted() {
    let m = workbench("resnet8_int8_torch").unwrap();
    let w = "dense.weight";
    let p = m.param(w).unwrap().clone();
    // Weight scales × 2: the dense accumulator y = W·x + b becomes 2·(y − b) + b; the logits
    // are then re-quantized with the output scale s, so each compares within about 2 s.
    let v = m
        .with_scales(w, &p.scales.iter().map(|x| 2.0 * x).collect::<Vec<_>>())
        .unwrap();
    let (before, after) = (m.weights(w).unwrap(), v.weights(w).unwrap());
    assert_eq!(after.dequantized, before.dequantized.mapv(|x| 2.0 * x));
    assert_eq!(after.int, before.int);
    assert_ne!(logit_differences(&m), logit_differences(&v));

    // One integer changed: only that dequantized value moves, by Δ·scale of its channel.
    let mut ints = m.weights(w).unwrap().int;
    let old = ints[[3, 7]];
    ints[[3, 7]] = if old < 100 { old + 20 } else { old - 20 };
    let v = m.with_weight_int(w, &ints).unwrap();
    let d = &v.weights(w).unwrap().dequantized - &m.weights(w).unwrap().dequantized;
    assert_eq!(d.iter().filter(|x| **x != 0.0).count(), 1);
    assert!((d[[3, 7]].abs() - 20.0 * p.scales[3]).abs() < 1e-6);
    assert_ne!(logit_differences(&m), logit_differences(&v));

    // Re-quantized to 3 bits: at most 7 levels per channel (symmetric).
    let v = m.with_bits("conv2d_4.weight", 3).unwrap();
    let w4 = v.weights("conv2d_4.weight").unwrap();
    for c in 0..w4.int.shape()[0] {
        let ch = w4.int.index_axis(Axis(0), c);
        assert!(ch.iter().all(|q| q.abs() <= 3), "channel {c}");
    }
    assert_ne!(
        m.run(batch().view()).unwrap(),
        v.run(batch().view()).unwrap()
    );
}

#[test]
fn activation_edits_change_inference_and_history_works() {
    let m = workbench("resnet8_int8_torch").unwrap();
    let t = "conv2d_2";
    // A zero point only matters through saturation (the consumer dequantizes with the tensor's
    // own parameters): 250 leaves 5 steps above zero, so positive values clip at 5·s.
    let v1 = m.with_zero_point(t, 250).unwrap();
    let v2 = v1.with_scale("add_relu", 0.2).unwrap();
    assert_eq!(v2.param(t).unwrap().zero_points, vec![250]);
    assert_eq!(v2.param("add_relu").unwrap().scales, vec![0.2]);
    assert_ne!(
        m.run(batch().view()).unwrap(),
        v1.run(batch().view()).unwrap()
    );
    assert_ne!(
        v1.run(batch().view()).unwrap(),
        v2.run(batch().view()).unwrap()
    );
    assert_eq!(v2.diff().rows.len(), 2);
    assert_eq!(
        v2.undo().unwrap().content_hash().unwrap(),
        v1.content_hash().unwrap()
    );
    assert_eq!(
        v2.reset().content_hash().unwrap(),
        m.content_hash().unwrap()
    );
    // The same edit made twice (two loads, two saves) gives the same bytes: the evaluation
    // cache keyed by content hash hits across kernel restarts.
    assert_eq!(
        m.with_zero_point(t, 250).unwrap().content_hash().unwrap(),
        v1.content_hash().unwrap()
    );
    let e = m.with_zero_point(t, 256).unwrap_err().to_string();
    assert!(e.contains(t) && e.contains("0..=255"), "{e}");
    let e = m.with_scale("add_relu", f32::NAN).unwrap_err().to_string();
    assert!(e.contains("add_relu") && e.contains("finite"), "{e}");
}

/// Versions live in memory and share with their parent every module object and all code an
/// edit does not touch. An edit never shows in the parent or in sibling versions: each version
/// predicts exactly as the same version saved and loaded afresh, and keeps its parameter table,
/// whatever was made and run after it.
#[test]
fn an_edit_never_leaks_into_the_parent_or_sibling_versions() {
    let m = workbench("resnet8_int8_torch").unwrap();
    let x = batch();
    let run = |v: &QuantModel| v.run(x.view()).unwrap();
    let base = run(&m);
    let s = |t: &str| m.param(t).unwrap().scales.clone();
    // Siblings, each from m: activation operands (a constant of the root graph, a constant of a
    // submodule's graph, a root attribute) and weights (per-channel conv; the linear layer's,
    // in a packed-params module nested in `dense`).
    let mut ints = m.weights("dense.weight").unwrap().int;
    ints[[2, 5]] = -ints[[2, 5]] + if ints[[2, 5]] > 0 { -1 } else { 1 };
    let siblings = [
        m.with_scale("add_relu", s("add_relu")[0] * 2.0).unwrap(),
        m.with_zero_point("conv2d_2", 250).unwrap(),
        m.with_scale("input", s("input")[0] * 1.5).unwrap(),
        m.with_bits("conv2d_3.weight", 2).unwrap(),
        m.with_weight_int("dense.weight", &ints).unwrap(),
    ];
    let tables: Vec<_> = siblings.iter().map(|v| v.quant_params().rows).collect();
    // Run in between, and edit the edited places again in children.
    let mut outputs: Vec<_> = siblings.iter().map(run).collect();
    let children = [
        siblings[0]
            .with_scale("add_relu", s("add_relu")[0] * 3.0)
            .unwrap(),
        siblings[1]
            .with_scale("conv2d_2", s("conv2d_2")[0] * 0.5)
            .unwrap(),
        siblings[2].with_zero_point("input", 3).unwrap(),
        siblings[3].with_bits("conv2d_3.weight", 4).unwrap(),
        siblings[4]
            .with_scales(
                "dense.weight",
                &s("dense.weight")
                    .iter()
                    .map(|v| v * 2.0)
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
    ];
    outputs.extend(children.iter().map(run));
    let dir = tempfile::tempdir().unwrap();
    let rows = m.quant_params().rows;
    assert_eq!(run(&m), base, "the original's outputs changed");
    assert_eq!(m.quant_params().rows, rows, "the original's table changed");
    for (i, v) in siblings.iter().chain(&children).enumerate() {
        let what = v.history().last().unwrap();
        assert_ne!(outputs[i], base, "{what}: the edit did nothing");
        assert_eq!(
            run(v),
            outputs[i],
            "{what}: outputs changed after later versions"
        );
        let path = dir.path().join(format!("v{i}.pt"));
        v.save(&path).unwrap();
        let fresh = workbench(path.to_str().unwrap()).unwrap();
        assert_eq!(
            run(&fresh),
            outputs[i],
            "{what}: differs from its saved copy"
        );
        assert_eq!(fresh.quant_params().rows, v.quant_params().rows, "{what}");
        if i < siblings.len() {
            assert_eq!(v.quant_params().rows, tables[i], "{what}: table changed");
            // The integer edit changes no scale or zero point.
            let changed = rows.iter().zip(&tables[i]).filter(|(a, b)| a != b).count();
            assert_eq!(
                changed,
                usize::from(i != 4),
                "{what}: {changed} rows differ"
            );
        }
    }
}

#[test]
fn a_saved_torch_version_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let m = workbench("resnet8_int8_torch").unwrap();
    let v = m
        .with_bits("conv2d_1.weight", 4)
        .unwrap()
        .with_scale("conv2d", 0.1)
        .unwrap();
    let path = dir.path().join("edited.pt");
    v.save(&path).unwrap();
    let back = workbench(path.to_str().unwrap()).unwrap();
    assert_eq!(back.quant_params().rows, v.quant_params().rows);
    let loaded = qplay::registry::load(path.to_str().unwrap()).unwrap();
    assert_eq!(
        loaded.run(batch().view()).unwrap(),
        v.run(batch().view()).unwrap()
    );
}

/// The seed project's quantized TorchScript (not committed; checked where it exists).
#[test]
fn the_seed_project_model_is_inspected_and_edited() {
    let seed_path = seed_model();
    if !seed_path.is_file() {
        eprintln!(
            "skipped: the seed project's model is not at {} (see ../shared/data/README.md)",
            seed_path.display()
        );
        return;
    }
    let seed = seed_path.to_str().expect("the seed model's path is UTF-8");
    let m = workbench(seed).unwrap();
    let p = m.quant_params();
    eprintln!(
        "seed model: {} activations, {} weights",
        p.count(Role::Activation),
        p.count(Role::Weight)
    );
    assert!(p.count(Role::Weight) >= 8 && p.count(Role::Activation) >= 16);
    let registry = qplay::registry::load(seed).unwrap();
    assert_eq!(
        m.run(batch().view()).unwrap(),
        registry.run(batch().view()).unwrap()
    );
    let cap = m.capture(batch().view(), &[]).unwrap();
    eprintln!("seed model: {} tensors captured", cap.tensors.len());
    assert!(cap.tensors.len() >= 16);
    let w = common::first_of(&m, Role::Weight);
    let v = m.with_bits(&w, 2).unwrap();
    let base = m.run(batch().view()).unwrap();
    assert_ne!(base, v.run(batch().view()).unwrap());
    // Graph-constant activations, in the root graph and in submodules: each edit changes the
    // outputs, leaves the original's alone, and predicts as its saved copy.
    let dir = tempfile::tempdir().unwrap();
    let constants: Vec<_> = p
        .rows
        .iter()
        .filter(|r| r.role == Role::Activation && r.scale_initializer == "graph constant")
        .collect();
    let in_root = |r: &qplay::quant::QuantParam| {
        r.quantize_node
            .as_deref()
            .is_some_and(|q| q.starts_with("forward #"))
    };
    let picks = [
        constants.iter().find(|r| in_root(r)),
        constants.iter().find(|r| !in_root(r)),
    ];
    eprintln!(
        "seed model: {} graph-constant activations; editing {:?}",
        constants.len(),
        picks.map(|r| r.map(|r| r.tensor.clone()))
    );
    for r in picks.into_iter().flatten() {
        let v = m.with_scale(&r.tensor, r.scales[0] * 3.0).unwrap();
        let out = v.run(batch().view()).unwrap();
        assert_ne!(out, base, "{}", r.tensor);
        assert_eq!(m.run(batch().view()).unwrap(), base, "{}", r.tensor);
        let path = dir.path().join("v.pt");
        v.save(&path).unwrap();
        let fresh = workbench(path.to_str().unwrap()).unwrap();
        assert_eq!(fresh.run(batch().view()).unwrap(), out, "{}", r.tensor);
        assert_eq!(fresh.quant_params().rows, v.quant_params().rows);
    }
}

/// Measured, not asserted: a new TorchScript version, its first 1-image run and a 100-image
/// quick evaluation, for an activation edit (a graph constant: new types and code for the path
/// to it, compiled on first run) and a per-channel weight edit (new objects only). Run it alone:
/// `cargo test --release -p qplay --test workbench_torch timing -- --nocapture`.
#[test]
fn timing_of_a_torch_version_and_a_quick_evaluation() {
    let data = data();
    let m = workbench("resnet8_int8_torch").unwrap();
    let _ = quick(&m, &data, 10).unwrap();
    let s = m.param("dense").unwrap().scales[0];
    let w = m.param("conv2d_3.weight").unwrap().scales.clone();
    let one = data.nhwc_batch(&[0]);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ms = |t: std::time::Instant| t.elapsed().as_secs_f64() * 1e3;
    for weight in [false, true] {
        let (mut total, mut edit, mut first, mut eval, mut again) =
            (vec![], vec![], vec![], vec![], vec![]);
        for k in 0..7 {
            let f = 1.1 + k as f32 / 10.0;
            let start = std::time::Instant::now();
            let v = if weight {
                let scales: Vec<f32> = w.iter().map(|x| x * f).collect();
                m.with_scales("conv2d_3.weight", &scales).unwrap()
            } else {
                m.with_scale("dense", s * f).unwrap()
            };
            let t1 = ms(start);
            v.run(one.view()).unwrap();
            let t2 = ms(start);
            let e = quick(&v, &data, 10).unwrap();
            let t3 = ms(start);
            assert_eq!(e.total(), 100);
            total.push(t3);
            edit.push(t1);
            first.push(t2 - t1);
            eval.push(t3 - t2);
            let r = std::time::Instant::now();
            quick(&v, &data, 10).unwrap();
            again.push(ms(r));
        }
        eprintln!(
            "torch, {} edit: version + first run + quick(100), median of 7: {:.1} ms = edit {:.1} \
             ms + first 1-image run {:.1} ms + quick(100) {:.1} ms; quick(100) again {:.1} ms \
             (QPLAY_THREADS={})",
            if weight {
                "per-channel weight"
            } else {
                "activation"
            },
            median(&mut total),
            median(&mut edit),
            median(&mut first),
            median(&mut eval),
            median(&mut again),
            qplay::onnx::thread_count()
        );
    }
}

#[test]
fn capture_returns_the_quantized_tensors_on_their_grids() {
    let m = workbench("resnet8_int8_torch").unwrap();
    let names = m.capturable();
    for want in [
        "input",
        "conv2d",
        "conv2d_2",
        "add_relu",
        "add_relu_2",
        "dense",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let cap = m.capture(batch().view(), &["conv2d_2", "dense"]).unwrap();
    assert_eq!(cap.tensors.len(), 2);
    let p = m.param("conv2d_2").unwrap().clone();
    let x = cap.get("conv2d_2").unwrap();
    assert_eq!(x.shape(), &[16, 16, 32, 32]);
    let (s, z) = (p.scales[0] as f64, p.zero_points[0] as f64);
    let on_grid = |v: f32| {
        let q = v as f64 / s + z;
        (q - q.round()).abs() < 1e-3 && (0.0..=255.0).contains(&q.round())
    };
    assert!(x.iter().all(|&v| on_grid(v)));
    // Zero point 250 leaves 5 steps above zero: the captured tensor clips at 5·s.
    let v = m.with_zero_point("conv2d_2", 250).unwrap();
    let y = v.capture(batch().view(), &["conv2d_2"]).unwrap();
    let y = y.get("conv2d_2").unwrap();
    let top = y.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    assert!(
        (top - 5.0 * s).abs() < 1e-5,
        "max {top}, expected {}",
        5.0 * s
    );
    // Elsewhere nothing moves, except that values the old zero point clipped at −z·s may now
    // go lower (the range below zero grew from z to 250 steps).
    let floor = -z * s;
    for (a, b) in x.iter().zip(y.iter()) {
        let (a, b) = (*a as f64, *b as f64);
        if a > floor + 1e-6 {
            assert!((a.min(5.0 * s) - b).abs() < 1e-5, "{a} → {b}");
        } else {
            assert!(b <= floor + 1e-5, "{a} → {b}");
        }
    }
    let e = m
        .capture(batch().view(), &["nope"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope") && e.contains("conv2d_2"), "{e}");
}
