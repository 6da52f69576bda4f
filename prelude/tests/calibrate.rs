//! The calibration lab against onnxruntime: calibrating the bundled float model with
//! models/build.py's settings reproduces the bundled QDQ models (made by onnxruntime's
//! `quantize_static`) bit for bit — every scale, zero point, weight and bias integer — and
//! their predictions.

mod common;

use qplay::data::Bundled;
use qplay::model::Model;
use qplay::quant::calibrate::{calibrate, CalibOptions, Method};
use qplay::quant::{workbench, QDtype, QuantModel, Role};

use common::dataset;

/// Every parameter of `ours` equals `reference`'s, by tensor name; integers too.
fn assert_same_model(ours: &QuantModel, reference: &QuantModel) {
    let a = ours.quant_params();
    let b = reference.quant_params();
    assert_eq!(
        (a.quantize_nodes, a.dequantize_nodes),
        (b.quantize_nodes, b.dequantize_nodes),
        "Q/DQ node counts"
    );
    assert_eq!(a.rows.len(), b.rows.len());
    for r in &b.rows {
        let o = ours
            .param(&r.tensor)
            .unwrap_or_else(|e| panic!("{}: {e}", r.tensor));
        assert_eq!(o.role, r.role, "{}", r.tensor);
        assert_eq!(o.dtype, r.dtype, "{}", r.tensor);
        assert_eq!(o.axis, r.axis, "{}", r.tensor);
        let bits = |v: &[f32]| v.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&o.scales), bits(&r.scales), "scales of {}", r.tensor);
        assert_eq!(o.zero_points, r.zero_points, "zero points of {}", r.tensor);
        if r.role != Role::Activation {
            let (wo, wr) = (
                ours.weights(&r.tensor).unwrap(),
                reference.weights(&r.tensor).unwrap(),
            );
            assert_eq!(wo.int, wr.int, "integers of {}", r.tensor);
        }
    }
}

fn same_predictions(ours: &QuantModel, reference: &QuantModel) {
    let test = dataset(Bundled::Lossless249);
    let idx: Vec<usize> = (0..test.len()).collect();
    let x = test.nhwc_batch(&idx);
    let a = ours.run(x.view()).unwrap();
    let b = reference.run(x.view()).unwrap();
    assert_eq!(a, b, "outputs differ");
}

#[test]
fn minmax_reproduces_the_bundled_models() {
    let data = dataset(Bundled::Train4000);
    for (name, act, weight, per_channel) in [
        ("resnet8_int8", QDtype::Int8, QDtype::Int8, false),
        ("resnet8_uint8", QDtype::Uint8, QDtype::Uint8, false),
        ("resnet8_int8_perchannel", QDtype::Int8, QDtype::Int8, true),
    ] {
        let options = CalibOptions {
            activation_type: act,
            weight_type: weight,
            per_channel,
            ..Default::default()
        };
        let ours = calibrate("resnet8_float", &data, &options).unwrap();
        let reference = workbench(name).unwrap();
        assert_same_model(&ours, &reference);
        same_predictions(&ours, &reference);
    }
}

#[test]
fn every_method_gives_a_working_model() {
    let data = dataset(Bundled::Train4000);
    let test = dataset(Bundled::Lossless249);
    for method in ["percentile:99.99", "entropy", "mse"] {
        let options = CalibOptions {
            method: method.parse::<Method>().unwrap(),
            per_class: 20,
            ..Default::default()
        };
        let m = calibrate("resnet8_float", &data, &options).unwrap();
        let e = qplay::eval::quick(&m, &test, 10).unwrap();
        assert!(e.accuracy() > 0.5, "{method}: {}", e.accuracy());
    }
}

#[test]
fn bad_options_are_named_with_their_range() {
    let data = dataset(Bundled::Train4000);
    let e = "percentile:120".parse::<Method>().unwrap_err().to_string();
    assert!(e.contains("0 < percentile <= 100"), "{e}");
    let e = "kmeans".parse::<Method>().unwrap_err().to_string();
    assert!(e.contains("minmax, percentile:P"), "{e}");
    let options = CalibOptions {
        weight_bits: 9,
        ..Default::default()
    };
    let e = calibrate("resnet8_float", &data, &options)
        .unwrap_err()
        .to_string();
    assert!(e.contains("weight_bits = 9") && e.contains("2 to 8"), "{e}");
    let e = calibrate("resnet8_int8", &data, &CalibOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("already has QuantizeLinear"), "{e}");
}

#[test]
fn recalibration_is_one_version_on_onnx_and_torchscript() {
    let data = dataset(Bundled::Train4000);
    for name in ["resnet8_int8", "resnet8_int8_torch"] {
        let m = workbench(name).unwrap();
        let r = m
            .recalibrate_with(
                &data,
                &CalibOptions {
                    method: Method::Percentile(99.9),
                    per_class: 20,
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        assert_eq!(r.version(), 1, "{name}");
        assert!(
            r.history()[0].contains("re-calibrated"),
            "{:?}",
            r.history()
        );
        assert_eq!(r.undo().unwrap().version(), 0);
        let changed = r.diff().rows.len();
        assert!(changed > 0, "{name}: nothing changed");
        let test = dataset(Bundled::Lossless249);
        assert!(
            qplay::eval::quick(&r, &test, 10).unwrap().accuracy() > 0.5,
            "{name}"
        );
        if !name.ends_with("_torch") {
            continue;
        }
        // TorchScript captures quantized (already clipped) activations: ranges only narrow.
        for p in r
            .quant_params()
            .rows
            .iter()
            .filter(|p| p.role == Role::Activation)
        {
            let before = m.param(&p.tensor).unwrap();
            assert!(
                p.scales[0] <= before.scales[0] * 1.0001,
                "{name}: {} grew from {} to {}",
                p.tensor,
                before.scales[0],
                p.scales[0]
            );
        }
    }
}

#[test]
fn equalization_keeps_the_function_and_evens_the_ranges() {
    let float = workbench("resnet8_float").unwrap();
    let (eq, pairs) = qplay::quant::calibrate::equalize(&float).unwrap();
    assert_eq!(
        pairs,
        [
            ("conv2d_1".to_string(), "conv2d_2".to_string()),
            ("conv2d_3".into(), "conv2d_4".into()),
            ("conv2d_6".into(), "conv2d_7".into())
        ]
    );
    let test = dataset(Bundled::Lossless249);
    let x = test.nhwc_batch(&(0..64).collect::<Vec<_>>());
    let (a, b) = (float.run(x.view()).unwrap(), eq.run(x.view()).unwrap());
    let diff = a
        .iter()
        .zip(b.iter())
        .map(|(p, q)| (p - q).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "outputs moved by {diff}");
    let data = dataset(Bundled::Train4000);
    let m = qplay::quant::calibrate::calibrate_version(
        &eq,
        &data,
        &CalibOptions {
            per_class: 20,
            ..Default::default()
        },
        None,
    )
    .unwrap();
    assert!(m.name().contains("[equalized]"), "{}", m.name());
}

#[test]
fn bias_correction_moves_the_mean_output_back() {
    let data = dataset(Bundled::Train4000);
    let float = workbench("resnet8_float").unwrap();
    let mut low = workbench("resnet8_int8").unwrap();
    for w in ["conv2d_1.weight", "conv2d_2.weight", "dense.weight"] {
        low = low.with_bits(w, 3).unwrap();
    }
    let corrected = low.bias_corrected(&float, &data, 10).unwrap();
    assert_eq!(corrected.version(), low.version() + 1);
    // Mean of the logits (dense output) over other images, per class: closer to float's.
    let x = data.nhwc_batch(&(3000..3200).collect::<Vec<_>>());
    let mean = |m: &QuantModel| {
        let c = m.capture(x.view(), &["dense"]).unwrap();
        let t = c.get("dense").unwrap().clone();
        t.mean_axis(ndarray::Axis(0)).unwrap()
    };
    let (f, before, after) = (mean(&float), mean(&low), mean(&corrected));
    let err = |m: &ndarray::ArrayD<f32>| (m - &f).mapv(f32::abs).sum();
    assert!(
        err(&after) < err(&before),
        "{} !< {}",
        err(&after),
        err(&before)
    );
}

#[test]
fn mixed_precision_stays_within_its_budget() {
    use qplay::quant::calibrate::{mixed_precision, MixedOptions};
    let test = dataset(Bundled::Test);
    let base = workbench("resnet8_int8_perchannel").unwrap();
    let options = MixedOptions {
        budget_pp: 1.0,
        per_class: 20,
        ..Default::default()
    };
    let r = mixed_precision(&base, &test, &options).unwrap();
    assert!(r.accuracy >= r.base_accuracy - 0.01 - 1e-12, "{r}");
    assert!(r.bytes < r.base_bytes, "nothing went below 8 bits: {r}");
    assert!(r.bits.values().all(|b| [4, 6, 8].contains(b)), "{r}");
    // The kept steps only shrink the model, and the chosen model is what was measured.
    let kept: Vec<_> = r.points.iter().filter(|p| p.kept).collect();
    assert!(kept.windows(2).all(|w| w[1].bytes < w[0].bytes));
    assert_eq!(kept.last().unwrap().bits, r.bits);
    assert_eq!(r.version.version(), 1);
    let again = r.version.quick(&test, 20).unwrap().accuracy();
    assert_eq!(again, r.accuracy);
    let e = mixed_precision(
        &base,
        &test,
        &MixedOptions {
            budget_pp: -1.0,
            ..options
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("0 to 100"), "{e}");
}

#[test]
fn narrow_activation_grids_keep_folded_relus_clipping() {
    let data = dataset(Bundled::Train4000);
    let test = dataset(Bundled::Lossless249);
    let options = CalibOptions {
        activation_bits: 7,
        per_class: 20,
        ..Default::default()
    };
    let m = calibrate("resnet8_float", &data, &options).unwrap();
    // Folded ReLUs: zero point at the bottom of int8.
    assert_eq!(m.param("activation").unwrap().zero_points, [-128]);
    let acc = qplay::eval::quick(&m, &test, 10).unwrap().accuracy();
    assert!(acc > 0.6, "7-bit activations: {acc}");
}

#[test]
fn bias_correction_refuses_another_float_model() {
    let data = dataset(Bundled::Train4000);
    let float = workbench("resnet8_float").unwrap();
    let (eq, _) = qplay::quant::calibrate::equalize(&float).unwrap();
    let options = CalibOptions {
        per_class: 10,
        ..Default::default()
    };
    let m = qplay::quant::calibrate::calibrate_version(&eq, &data, &options, None).unwrap();
    let e = m.bias_corrected(&float, &data, 5).unwrap_err().to_string();
    assert!(e.contains("is not the float model"), "{e}");
    assert!(m.bias_corrected(&eq, &data, 5).is_ok());
}

/// The exact ranges found by screening on the optimized graph and settling a few images on the
/// exact one are, bit for bit, those of the exact graph on every image; where settling would
/// take too many images every image runs.
#[test]
fn screened_ranges_are_the_exact_graphs() {
    use qplay::quant::calibrate::extremes::{every_image, measure, Found};
    use qplay::quant::calibrate::qdq::{Placement, Plan};
    use qplay::quant::calibrate::stats::Source;
    use qplay::quant::onnx_graph;

    let data = dataset(Bundled::Train4000);
    let bytes = std::fs::read(qplay::paths::root().join("models/resnet8_float.onnx")).unwrap();
    let model = onnx_graph::decode(&bytes).unwrap();
    let placement = Placement {
        per_channel: false,
        symmetric_activations: false,
        exclude: model
            .graph
            .iter()
            .flat_map(|g| &g.node)
            .filter(|n| n.op_type() == "Softmax")
            .map(|n| n.name().to_string())
            .collect(),
    };
    let measured = Plan::new(&model, &placement).unwrap().measured(&model);
    // Every node's output but the Softmax's (its largest value is 1 on a fifth of the images).
    let mut every_tensor = onnx_graph::node_outputs(&model);
    let softmax = every_tensor.pop().unwrap();
    assert_eq!(
        onnx_graph::producer_op(&model, &softmax).as_deref(),
        Some("Softmax")
    );
    let bits = |r: &std::collections::BTreeMap<String, qplay::quant::calibrate::ranges::MinMax>| {
        r.iter()
            .map(|(t, m)| (t.clone(), m.min.to_bits(), m.max.to_bits()))
            .collect::<Vec<_>>()
    };
    for (tensors, per_class) in [(&measured, 100), (&every_tensor, 30), (&measured, 1)] {
        let indices = data.stratified(per_class).unwrap();
        let src = Source {
            model: &model,
            tensors,
            data: &data,
            indices: &indices,
        };
        let (ranges, found) = measure(&src, None).unwrap();
        assert_eq!(
            bits(&ranges),
            bits(&every_image(&src, None).unwrap()),
            "{per_class} per class"
        );
        assert_eq!(ranges.len(), tensors.len());
        match (per_class, found) {
            // ResNet-8: each extreme's leader, and hardly anything else.
            (100 | 30, Found::Settled { images }) => {
                assert!(images <= 2 * tensors.len(), "{images}")
            }
            (1, Found::EveryImage(why)) => assert!(why.contains("quarter"), "{why}"),
            (_, found) => panic!("{per_class} per class: {found:?}"),
        }
    }
}
