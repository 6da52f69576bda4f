//! The quantization workbench on the bundled ONNX QDQ models: inspection, copy-on-write edits
//! whose effect on inference matches the arithmetic, validation, history, save and capture.

use ndarray::{ArrayD, Axis};
use qplay::data::{Bundled, Dataset};
use qplay::eval::quick;
use qplay::model::Model;
use qplay::quant::onnx_graph;
use qplay::quant::{workbench, QDtype, QuantModel, Role};

fn data() -> Dataset {
    Dataset::bundled(&qplay::paths::root(), Bundled::Lossless249).unwrap()
}

fn batch() -> ndarray::Array4<f32> {
    data().nhwc_batch(&[0, 1, 2, 3, 4, 5, 6, 7])
}

/// QuantizeLinear then DequantizeLinear, as ONNX defines them (round half to even, saturate).
fn qdq(x: f32, s: f32, z: i32, dtype: QDtype) -> f32 {
    let (lo, hi) = dtype.range();
    let q = ((x / s).round_ties_even() as i64 + z as i64).clamp(lo, hi);
    (q - z as i64) as f32 * s
}

fn max_abs_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn quant_params_cover_every_qdq_node() {
    for name in ["resnet8_int8", "resnet8_uint8", "resnet8_int8_perchannel"] {
        let m = workbench(name).unwrap();
        let p = m.quant_params();
        assert_eq!((p.quantize_nodes, p.dequantize_nodes), (16, 36), "{name}");
        assert_eq!(p.count(Role::Activation), 16, "{name}");
        assert_eq!(p.count(Role::Weight), 10, "{name}");
        assert_eq!(p.count(Role::Bias), 10, "{name}");
        let mut nodes: Vec<String> = p
            .rows
            .iter()
            .flat_map(|r| r.quantize_node.iter().chain(&r.dequantize_nodes).cloned())
            .collect();
        nodes.sort();
        nodes.dedup();
        assert_eq!(
            nodes.len(),
            52,
            "{name}: every Q/DQ node belongs to one row"
        );
        for r in &p.rows {
            assert_eq!(r.scales.len(), r.zero_points.len());
            assert!(r.scales.iter().all(|s| s.is_finite() && *s > 0.0));
            match r.role {
                Role::Bias => assert_eq!(r.dtype, QDtype::Int32),
                _ if name == "resnet8_uint8" => assert_eq!(r.dtype, QDtype::Uint8),
                _ => assert_eq!(r.dtype, QDtype::Int8),
            }
            let per_channel = name.ends_with("perchannel") && r.role != Role::Activation;
            assert_eq!(r.per_channel(), per_channel, "{name} {}", r.tensor);
            if per_channel {
                // Conv weights and biases per output channel (axis 0); the dense layer's
                // weight is transposed and gets axis 1.
                let axis = r.axis.unwrap() as usize;
                assert_eq!(
                    axis,
                    usize::from(r.tensor == "dense.weight"),
                    "{}",
                    r.tensor
                );
                assert_eq!(r.scales.len(), r.shape[axis], "{}", r.tensor);
            }
        }
        let act = p.rows.iter().find(|r| r.tensor == "activation_2").unwrap();
        assert_eq!(act.producer.as_deref(), Some("add"));
        assert_eq!(p.to_json().as_array().unwrap().len(), 36);
        let html = qplay::display::Rich::mime_bundle(&p)["text/html"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(html.contains("<table>") && html.contains("conv2d_3.weight"));
    }
}

#[test]
fn the_protobuf_round_trips_byte_for_byte() {
    for name in [
        "resnet8_float",
        "resnet8_int8",
        "resnet8_uint8",
        "resnet8_int8_perchannel",
    ] {
        let path = qplay::registry::resolve(name).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let model = onnx_graph::decode(&bytes).unwrap();
        assert!(
            onnx_graph::encode(&model) == bytes,
            "{name}: decode + encode changed the bytes"
        );
    }
}

#[test]
fn version_zero_predicts_exactly_as_the_registry_model() {
    let data = data();
    for name in ["resnet8_int8", "resnet8_int8_perchannel"] {
        let v = workbench(name).unwrap();
        let registry = qplay::registry::load(name).unwrap();
        let ours = quick(&v, &data, 10).unwrap();
        let theirs = quick(registry.as_ref(), &data, 10).unwrap();
        assert_eq!(ours.predictions, theirs.predictions, "{name}");
        assert_eq!(v.name(), name);
    }
}

#[test]
fn weights_are_integers_and_their_dequantized_values() {
    let m = workbench("resnet8_int8_perchannel").unwrap();
    let w = m.weights("conv2d_1.weight").unwrap();
    assert_eq!(w.int.shape(), &[16, 16, 3, 3]);
    for c in 0..16 {
        let ints = w.int.index_axis(Axis(0), c);
        let deq = w.dequantized.index_axis(Axis(0), c);
        for (q, d) in ints.iter().zip(deq.iter()) {
            assert_eq!(*d, (*q - w.zero_points[c]) as f32 * w.scales[c]);
        }
    }
    let b = m.weights("conv2d_1.bias").unwrap();
    assert_eq!((b.dtype, b.int.shape()), (QDtype::Int32, &[16][..]));
    let err = m.weights("activation_1").unwrap_err().to_string();
    assert!(
        err.contains("activation_1") && err.contains("conv2d.weight"),
        "{err}"
    );
}

/// Checks that in `v` the tensor after `tensor`'s QDQ pair is QDQ(before) with `v`'s parameters.
fn check_activation_qdq(v: &QuantModel, tensor: &str) {
    let p = v.param(tensor).unwrap().clone();
    let post = p.dequantized_output.clone().unwrap();
    let cap = v.capture(batch().view(), &[tensor, &post]).unwrap();
    let (before, after) = (cap.get(tensor).unwrap(), cap.get(&post).unwrap());
    let predicted = before.mapv(|x| qdq(x, p.scales[0], p.zero_points[0], p.dtype));
    assert!(
        max_abs_diff(&predicted, after) <= 1e-6 * p.scales[0],
        "{tensor}: captured QDQ output is not QDQ(input) with scale {} and zero point {}",
        p.scales[0],
        p.zero_points[0]
    );
}

#[test]
fn doubling_an_activation_scale_changes_the_tensor_as_predicted() {
    for name in ["resnet8_int8", "resnet8_uint8"] {
        let m = workbench(name).unwrap();
        let t = "activation_2";
        let s = m.param(t).unwrap().scales[0];
        let v = m.with_scale(t, 2.0 * s).unwrap();
        assert_eq!(v.param(t).unwrap().scales, vec![2.0 * s]);
        assert_eq!(m.param(t).unwrap().scales, vec![s], "the original changed");
        check_activation_qdq(&m, t);
        check_activation_qdq(&v, t);
        // The tensor before the pair is upstream of the edit: unchanged. After it: changed.
        let post = "activation_2_DequantizeLinear_Output";
        let a = m.capture(batch().view(), &[t, post]).unwrap();
        let b = v.capture(batch().view(), &[t, post]).unwrap();
        assert_eq!(a.get(t).unwrap(), b.get(t).unwrap());
        assert!(max_abs_diff(a.get(post).unwrap(), b.get(post).unwrap()) > 0.0);
        let (sa, sb) = (
            m.run(batch().view()).unwrap(),
            v.run(batch().view()).unwrap(),
        );
        assert!(sa != sb, "{name}: final scores did not change");
    }
}

#[test]
fn changing_an_activation_zero_point_changes_the_tensor_as_predicted() {
    let m = workbench("resnet8_int8").unwrap();
    let t = "activation_3";
    let z = m.param(t).unwrap().zero_points[0];
    let v = m.with_zero_point(t, z + 20).unwrap();
    check_activation_qdq(&v, t);
    assert_ne!(
        m.run(batch().view()).unwrap(),
        v.run(batch().view()).unwrap()
    );
}

#[test]
fn weight_and_bias_edits_change_the_convolution_as_predicted() {
    let m = workbench("resnet8_int8").unwrap();
    let (w, b, y) = ("conv2d_1.weight", "conv2d_1.bias", "activation_1");
    let w_dq = "conv2d_1.weight_DequantizeLinear_Output";
    let bias = m.weights(b).unwrap().dequantized;
    let base = m.capture(batch().view(), &[y, w_dq]).unwrap();
    let y0 = base.get(y).unwrap().clone();

    // Weight scale × 2: dequantized weights double, conv output = 2·(y − b) + b.
    let s = m.param(w).unwrap().scales[0];
    let v = m.with_scale(w, 2.0 * s).unwrap();
    let cap = v.capture(batch().view(), &[y, w_dq]).unwrap();
    let doubled = base.get(w_dq).unwrap().mapv(|x| 2.0 * x);
    assert_eq!(cap.get(w_dq).unwrap(), &doubled);
    let mut predicted = y0.clone();
    for (c, mut plane) in predicted.axis_iter_mut(Axis(1)).enumerate() {
        plane.mapv_inplace(|v| 2.0 * (v - bias[c]) + bias[c]);
    }
    let tol = 1e-4 * y0.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max_abs_diff(&predicted, cap.get(y).unwrap()) < tol);

    // Bias integers + 100 on channel 3: that channel shifts by 100 · bias scale, others not.
    let bp = m.param(b).unwrap().clone();
    let mut ints = m.weights(b).unwrap().int;
    ints[[3]] += 100;
    let v = m.with_weight_int(b, &ints).unwrap();
    let y1 = v
        .capture(batch().view(), &[y])
        .unwrap()
        .get(y)
        .unwrap()
        .clone();
    let shift = &y1 - &y0;
    for (c, plane) in shift.axis_iter(Axis(1)).enumerate() {
        let want = if c == 3 { 100.0 * bp.scales[0] } else { 0.0 };
        assert!(
            plane
                .iter()
                .all(|d| (d - want).abs() <= 1e-4 * (1.0 + want.abs())),
            "channel {c}"
        );
    }

    // One weight integer + 5: its dequantized value moves by 5 · scale, nothing else moves.
    let mut wi = m.weights(w).unwrap().int;
    let old = wi[[2, 1, 0, 0]];
    wi[[2, 1, 0, 0]] = if old <= 120 { old + 5 } else { old - 5 };
    let v = m.with_weight_int(w, &wi).unwrap();
    let d = &v.weights(w).unwrap().dequantized - &m.weights(w).unwrap().dequantized;
    assert_eq!(d.iter().filter(|x| **x != 0.0).count(), 1);
    assert_eq!(d[[2, 1, 0, 0]].abs(), 5.0 * s);
    let cap = v.capture(batch().view(), &[w_dq]).unwrap();
    assert_eq!(cap.get(w_dq).unwrap(), &v.weights(w).unwrap().dequantized);
    assert_ne!(
        m.run(batch().view()).unwrap(),
        v.run(batch().view()).unwrap()
    );
}

#[test]
fn per_channel_edits_touch_only_their_channel() {
    let m = workbench("resnet8_int8_perchannel").unwrap();
    let w = "conv2d_2.weight";
    let dq = "conv2d_2.weight_DequantizeLinear_Output";
    let p = m.param(w).unwrap().clone();
    let mut scales = p.scales.clone();
    scales[5] *= 2.0;
    let v = m.with_scales(w, &scales).unwrap();
    let a = m.capture(batch().view(), &[dq]).unwrap();
    let b = v.capture(batch().view(), &[dq]).unwrap();
    let (a, b) = (a.get(dq).unwrap(), b.get(dq).unwrap());
    for c in 0..p.shape[0] {
        let k = if c == 5 { 2.0 } else { 1.0 };
        let want = a.index_axis(Axis(0), c).mapv(|x| k * x);
        assert_eq!(b.index_axis(Axis(0), c), want, "channel {c}");
    }
    let mut zps = p.zero_points.clone();
    zps[1] = 3;
    let v = m.with_zero_points(w, &zps).unwrap();
    let got = v.weights(w).unwrap();
    let was = m.weights(w).unwrap();
    let d = &was.dequantized - &got.dequantized;
    for c in 0..p.shape[0] {
        let want = if c == 1 { 3.0 * p.scales[1] } else { 0.0 };
        assert!(d
            .index_axis(Axis(0), c)
            .iter()
            .all(|x| (x - want).abs() < 1e-7));
    }
}

#[test]
fn with_bits_requantizes_a_weight_on_a_coarser_grid() {
    for name in ["resnet8_int8", "resnet8_uint8", "resnet8_int8_perchannel"] {
        let m = workbench(name).unwrap();
        let w = "conv2d_4.weight";
        let v = m.with_bits(w, 4).unwrap();
        let (was, now) = (m.weights(w).unwrap(), v.weights(w).unwrap());
        let p = v.param(w).unwrap();
        for (c, (&s, &z)) in p.scales.iter().zip(&p.zero_points).enumerate() {
            let ints: Vec<i32> = if p.per_channel() {
                now.int.index_axis(Axis(0), c).iter().copied().collect()
            } else {
                now.int.iter().copied().collect()
            };
            let (lo, hi) = (ints.iter().min().unwrap(), ints.iter().max().unwrap());
            assert!(
                hi - lo < 16,
                "{name} channel {c}: {lo}..={hi} is not a 4-bit grid"
            );
            // Each weight moved at most half a step of the new grid.
            let _ = z;
            let old = if p.per_channel() {
                was.dequantized.index_axis(Axis(0), c).to_owned().into_dyn()
            } else {
                was.dequantized.clone()
            };
            let new = if p.per_channel() {
                now.dequantized.index_axis(Axis(0), c).to_owned().into_dyn()
            } else {
                now.dequantized.clone()
            };
            assert!(
                max_abs_diff(&old, &new) <= 0.5 * s * (1.0 + 1e-5),
                "{name} channel {c}"
            );
        }
        assert_ne!(
            m.run(batch().view()).unwrap(),
            v.run(batch().view()).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn invalid_edits_name_the_tensor_and_the_allowed_values_and_change_nothing() {
    let m = workbench("resnet8_int8").unwrap();
    let before = m.quant_params().rows;
    let t = "activation_4";
    for bad in [f32::NAN, f32::INFINITY, 0.0, -0.5] {
        let e = m.with_scale(t, bad).unwrap_err().to_string();
        assert!(e.contains(t) && e.contains("finite number > 0"), "{e}");
    }
    let e = m.with_zero_point(t, 128).unwrap_err().to_string();
    assert!(e.contains(t) && e.contains("-128..=127"), "{e}");
    let e = m
        .with_scales("conv2d.weight", &[1.0, 2.0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("conv2d.weight") && e.contains("1 scale"), "{e}");
    let e = m
        .with_weight_int("conv2d.weight", &ArrayD::zeros(vec![16, 3, 3]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv2d.weight") && e.contains("[16, 3, 3, 3]"),
        "{e}"
    );
    let e = m
        .with_weight_int("conv2d.weight", &ArrayD::from_elem(vec![16, 3, 3, 3], 200))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv2d.weight") && e.contains("-128..=127"),
        "{e}"
    );
    let e = m.with_scale("no_such_tensor", 1.0).unwrap_err().to_string();
    assert!(
        e.contains("no_such_tensor") && e.contains("activation_4"),
        "{e}"
    );
    let e = m.with_bits("conv2d.weight", 1).unwrap_err().to_string();
    assert!(e.contains("conv2d.weight") && e.contains("2 to 8"), "{e}");
    let e = m.with_bits(t, 4).unwrap_err().to_string();
    assert!(e.contains(t) && e.contains("conv2d.weight"), "{e}");
    let u = workbench("resnet8_uint8").unwrap();
    let e = u.with_zero_point(t, -1).unwrap_err().to_string();
    assert!(e.contains("0..=255"), "{e}");
    let pc = workbench("resnet8_int8_perchannel").unwrap();
    let e = pc.with_scale("conv2d.weight", 0.1).unwrap_err().to_string();
    assert!(e.contains("per-channel") && e.contains("16"), "{e}");
    let e = pc
        .with_scales("conv2d.weight", &[0.1; 15])
        .unwrap_err()
        .to_string();
    assert!(e.contains("16 scale") && e.contains("15"), "{e}");
    assert_eq!(m.quant_params().rows, before);
    assert_eq!(m.version(), 0);
}

#[test]
fn versions_know_their_history() {
    let m = workbench("resnet8_int8").unwrap();
    let s = m.param("activation_5").unwrap().scales[0];
    let v1 = m.with_scale("activation_5", 1.5 * s).unwrap();
    let v2 = v1.with_bits("conv2d_6.weight", 3).unwrap();
    assert_eq!((v1.version(), v2.version()), (1, 2));
    assert_eq!(v2.name(), "resnet8_int8@v2");
    assert_eq!(v2.history().len(), 2);
    let diff = v2.diff();
    let fields: Vec<(&str, &str)> = diff
        .rows
        .iter()
        .map(|r| (r.tensor.as_str(), r.field.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("conv2d_6.weight", "scale"),
            ("conv2d_6.weight", "integer values"),
            ("activation_5", "scale"),
        ]
    );
    let back = v2.undo().unwrap();
    assert_eq!(back.quant_params().rows, v1.quant_params().rows);
    assert_eq!(back.content_hash().unwrap(), v1.content_hash().unwrap());
    let orig = v2.reset();
    assert_eq!(orig.version(), 0);
    assert_eq!(orig.content_hash().unwrap(), m.content_hash().unwrap());
    assert!(orig.diff().rows.is_empty());
    assert!(m.undo().is_err());
}

#[test]
fn a_saved_version_loads_back_with_its_edits() {
    let dir = tempfile::tempdir().unwrap();
    let m = workbench("resnet8_int8").unwrap();
    let v = m
        .with_scale("activation_2", 0.05)
        .unwrap()
        .with_bits("conv2d_3.weight", 4)
        .unwrap();
    let path = dir.path().join("edited.onnx");
    v.save(&path).unwrap();
    let back = workbench(path.to_str().unwrap()).unwrap();
    assert_eq!(back.quant_params().rows, v.quant_params().rows);
    assert_eq!(
        back.run(batch().view()).unwrap(),
        v.run(batch().view()).unwrap()
    );
    let loaded = qplay::registry::load(path.to_str().unwrap()).unwrap();
    assert_eq!(
        loaded.run(batch().view()).unwrap(),
        v.run(batch().view()).unwrap()
    );
}

/// Measured, not asserted: a new version plus a 100-image quick evaluation. Run it alone to
/// see the numbers: `cargo test --release -p qplay --test workbench timing -- --nocapture`.
#[test]
fn timing_of_a_version_and_a_quick_evaluation() {
    let data = data();
    let m = workbench("resnet8_int8").unwrap();
    let _ = quick(&m, &data, 10).unwrap();
    let s = m.param("activation_3").unwrap().scales[0];
    let (mut total, mut edit, mut session, mut eval, mut reg) =
        (vec![], vec![], vec![], vec![], vec![]);
    let one = data.nhwc_batch(&[0]);
    for k in 0..7 {
        let start = std::time::Instant::now();
        let v = m
            .with_scale("activation_3", s * (1.1 + k as f32 / 10.0))
            .unwrap();
        let t1 = start.elapsed().as_secs_f64() * 1e3;
        v.run(one.view()).unwrap();
        let t2 = start.elapsed().as_secs_f64() * 1e3;
        let e = quick(&v, &data, 10).unwrap();
        let t3 = start.elapsed().as_secs_f64() * 1e3;
        assert_eq!(e.total(), 100);
        total.push(t3);
        edit.push(t1);
        session.push(t2 - t1);
        eval.push(t3 - t2);
    }
    // The registry's model afterwards (its session's threads spin while idle, which would
    // slow the versions' runs if it were loaded first).
    let registry = qplay::registry::load("resnet8_int8").unwrap();
    quick(registry.as_ref(), &data, 10).unwrap();
    for _ in 0..7 {
        let r = std::time::Instant::now();
        quick(registry.as_ref(), &data, 10).unwrap();
        reg.push(r.elapsed().as_secs_f64() * 1e3);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    eprintln!(
        "version + quick(100), median of 7: {:.1} ms = edit {:.1} ms + session (first 1-image run) \
         {:.1} ms + quick(100) {:.1} ms; registry model quick(100) {:.1} ms (QPLAY_THREADS={})",
        median(&mut total),
        median(&mut edit),
        median(&mut session),
        median(&mut eval),
        median(&mut reg),
        qplay::onnx::thread_count()
    );
}

/// The playground's path (a histogram, then the per-layer SQNR of the same version on the same
/// images, then again for the next version, the float model answered from its memo) gives
/// exactly, bit for bit, what capturing every tensor afresh and summing in one loop gives: the
/// SQNR numbers as onnxruntime's `qdq_loss_debug` definition computes them (as before the memo
/// and the selective capture runs) and the same histograms.
#[test]
fn memoized_captures_give_exactly_the_uncached_numbers() {
    use qplay::charts::{histogram, tensor_histogram};
    use qplay::quant::sqnr::{layer_errors, matching_pairs, sqnr_from_sums};

    let data = data();
    // Two batches (100 + 50): sums run on across batches.
    let indices: Vec<usize> = (0..150).collect();
    let first: Vec<usize> = (0..100).collect();
    let float = workbench("resnet8_float").unwrap();
    let m = workbench("resnet8_int8").unwrap();
    let t = "conv2d_2";
    let edit = |m: &QuantModel, k: f32| {
        let p = m.param(t).unwrap().clone();
        m.with_scale(t, p.scales[0] * k)
            .unwrap()
            .with_zero_point(t, p.zero_points[0] + 3)
            .unwrap()
    };
    // Uncached: fresh models, every capturable tensor of each batch, one loop over the elements.
    let reference = |k: f32| {
        let (f, q) = (workbench("resnet8_float").unwrap(), edit(&m, k));
        let pairs = matching_pairs(&q.capturable());
        let mut sums = vec![[0f64; 4]; pairs.len()];
        for chunk in indices.chunks(100) {
            let batch = data.nhwc_batch(chunk);
            let (qc, fc) = (
                q.capture(batch.view(), &[]).unwrap(),
                f.capture(batch.view(), &[]).unwrap(),
            );
            for (s, (name, pre, post)) in sums.iter_mut().zip(&pairs) {
                let (pre, post) = (qc.get(pre).unwrap(), qc.get(post).unwrap());
                for (&a, &b) in pre.iter().zip(post.iter()) {
                    s[0] += a as f64 * a as f64;
                    let d = (a - b) as f64;
                    s[1] += d * d;
                }
                if let Some(fl) = fc.tensors.get(name) {
                    for (&a, &b) in fl.iter().zip(post.iter()) {
                        s[2] += a as f64 * a as f64;
                        let d = (a - b) as f64;
                        s[3] += d * d;
                    }
                }
            }
        }
        let rows: Vec<(String, f64, f64)> = pairs
            .iter()
            .zip(&sums)
            .map(|((n, _, _), s)| {
                (
                    n.clone(),
                    sqnr_from_sums(s[0], s[1]),
                    sqnr_from_sums(s[2], s[3]),
                )
            })
            .collect();
        let p = q.param(t).unwrap().clone();
        let batch = data.nhwc_batch(&first);
        let values: Vec<f32> = q
            .capture(batch.view(), &[])
            .unwrap()
            .get(t)
            .unwrap()
            .iter()
            .copied()
            .collect();
        (rows, histogram(t, &values, &p, 0).unwrap().0)
    };
    for k in [1.3f32, 0.6] {
        let (rows, svg) = reference(k);
        let v = edit(&m, k);
        let batch = data.nhwc_batch(&first);
        let h = tensor_histogram(&v, t, Some(batch.view()), 0).unwrap();
        assert_eq!(h.0, svg, "histogram, k = {k}");
        for round in 0..2 {
            let e = layer_errors(&float, &v, &data, &indices).unwrap();
            let got: Vec<(String, f64, f64)> = e
                .rows
                .iter()
                .map(|r| (r.tensor.clone(), r.qdq_err, r.xmodel_err.unwrap()))
                .collect();
            assert_eq!(got, rows, "k = {k}, round {round}");
        }
        // The histogram again, now from the memo.
        assert_eq!(
            tensor_histogram(&v, t, Some(batch.view()), 0).unwrap().0,
            svg
        );
    }
}
