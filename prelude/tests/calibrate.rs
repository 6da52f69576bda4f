//! The calibration lab against onnxruntime: calibrating the bundled float model with
//! models/build.py's settings reproduces the bundled QDQ models (made by onnxruntime's
//! `quantize_static`) bit for bit — every scale, zero point, weight and bias integer — and
//! their predictions.

use qplay::data::{Bundled, Dataset};
use qplay::model::Model;
use qplay::quant::calibrate::{calibrate, CalibOptions, Method};
use qplay::quant::{workbench, QDtype, QuantModel, Role};

fn train() -> Dataset {
    Dataset::bundled(&qplay::paths::root(), Bundled::Train4000).unwrap()
}

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
    let test = Dataset::bundled(&qplay::paths::root(), Bundled::Lossless249).unwrap();
    let idx: Vec<usize> = (0..test.len()).collect();
    let x = test.nhwc_batch(&idx);
    let a = ours.run(x.view()).unwrap();
    let b = reference.run(x.view()).unwrap();
    assert_eq!(a, b, "outputs differ");
}

#[test]
fn minmax_reproduces_the_bundled_models() {
    let data = train();
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
    let data = train();
    let test = Dataset::bundled(&qplay::paths::root(), Bundled::Lossless249).unwrap();
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
    let data = train();
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
