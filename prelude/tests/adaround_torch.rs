//! AdaRound on quantized TorchScript: the bundled FX int8 model at 4-bit weights (`with_bits`,
//! a narrower grid inside qint8) learns a rounding that beats nearest rounding on test images it
//! did not learn on; the saved `.pt` runs in plain tch with qplay's predictions; a seed gives the
//! same module every time; float references that do not fit are refused by name.

mod common;

use prost::Message;
use qplay::data::Bundled;
use qplay::eval::{evaluate, quick, EvalOptions};
use qplay::quant::adaround::{adaround, adaround_with, AdaRoundOptions};
use qplay::quant::onnx_graph::proto::ModelProto;
use qplay::quant::{workbench, QuantModel, Role};

use common::dataset;

fn weights(m: &QuantModel) -> Vec<String> {
    m.quant_params()
        .rows
        .iter()
        .filter(|p| p.role == Role::Weight)
        .map(|p| p.tensor.clone())
        .collect()
}

/// `resnet8_int8_torch` with every weight re-quantized to 4 bits (per channel, symmetric, as
/// the model stores them).
fn w4() -> QuantModel {
    let m = workbench("resnet8_int8_torch").unwrap();
    weights(&m)
        .iter()
        .fold(m.clone(), |v, w| v.with_bits(w, 4).unwrap())
}

fn ints(m: &QuantModel, w: &str) -> Vec<i32> {
    m.weights(w).unwrap().int.iter().copied().collect()
}

fn fast() -> AdaRoundOptions {
    AdaRoundOptions {
        iterations: 300,
        per_class: 10,
        ..Default::default()
    }
}

#[test]
fn torch_adaround_beats_nearest_rounding_on_held_out_images() {
    let float = workbench("resnet8_float").unwrap();
    let m = w4();
    let r = adaround_with(&m, &float, &dataset(Bundled::Train4000), &fast(), None).unwrap();
    let test = dataset(Bundled::Test);
    let nearest = quick(&m, &test, 50).unwrap().accuracy();
    let learned = quick(&r.version, &test, 50).unwrap().accuracy();
    eprintln!("{r}nearest {nearest:.4}, AdaRound {learned:.4} on 500 test images");
    assert!(
        learned >= nearest + 0.10,
        "AdaRound {learned:.4} is not 10 points above nearest rounding {nearest:.4}"
    );
    // Every packed weight, in the root graph's order; each layer's output error went down.
    let names: Vec<&str> = r.layers.iter().map(|l| l.weight.as_str()).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    assert_eq!(names[0], "conv2d.weight");
    assert_eq!(names[9], "dense.weight");
    for l in &r.layers {
        assert!(l.learned_error < l.nearest_error, "{}", l.weight);
        assert_eq!(l.bits, 4, "{}", l.weight);
    }
    // One edit of m; scales, zero points and the grid are kept; each integer within one step
    // of nearest rounding.
    let v = &r.version;
    assert_eq!(v.history().len(), m.history().len() + 1);
    for w in weights(&m) {
        assert_eq!(v.param(&w).unwrap(), m.param(&w).unwrap(), "{w}");
        let (a, b) = (ints(v, &w), ints(&m, &w));
        assert!(a.iter().all(|q| (-7..=7).contains(q)), "{w}");
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1), "{w}");
    }
    // Undo gives m back.
    assert_eq!(
        v.undo().unwrap().content_hash().unwrap(),
        m.content_hash().unwrap()
    );
}

#[test]
fn the_saved_module_runs_in_tch_with_qplays_predictions_and_a_seed_repeats_it() {
    let float = workbench("resnet8_float").unwrap();
    let m = w4();
    let data = dataset(Bundled::Train4000);
    let options = AdaRoundOptions {
        iterations: 40,
        per_class: 3,
        seed: 7,
        ..Default::default()
    };
    let a = adaround(&m, &float, &data, &options).unwrap();
    let b = adaround(&m, &float, &data, &options).unwrap();
    assert_eq!(a.content_hash().unwrap(), b.content_hash().unwrap());
    assert_ne!(a.content_hash().unwrap(), m.content_hash().unwrap());
    // The .pt, loaded by tch's own CModule (not the workbench's shim), predicts as qplay does.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w4_adaround.pt");
    a.save(&path).unwrap();
    let loaded = qplay::torch::TorchModel::load("w4_adaround", &path).unwrap();
    let test = dataset(Bundled::Lossless249);
    let theirs = evaluate(&loaded, &test, &EvalOptions::default()).unwrap();
    let ours = evaluate(&a, &test, &EvalOptions::default()).unwrap();
    assert_eq!(theirs.predictions, ours.predictions);
    // And the workbench reads the integers it wrote back from the file.
    let back = workbench(path.to_str().unwrap()).unwrap();
    for w in weights(&m) {
        assert_eq!(ints(&back, &w), ints(&a, &w), "{w}");
    }
}

/// `resnet8_float` with `conv2d_1` made a 1×1 convolution (its kernel's centre): a valid float
/// model of another architecture, written to `dir`.
fn other_architecture(dir: &std::path::Path) -> QuantModel {
    let path = qplay::paths::root().join("models/resnet8_float.onnx");
    let mut proto = ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    let init = graph
        .initializer
        .iter_mut()
        .find(|t| t.name() == "conv2d_1.weight")
        .unwrap();
    let values: Vec<f32> = if init.float_data.is_empty() {
        init.raw_data()
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    } else {
        init.float_data.clone()
    };
    let centre: Vec<f32> = values.chunks(9).map(|k| k[4]).collect();
    init.dims = vec![16, 16, 1, 1];
    init.float_data = centre;
    init.raw_data = None;
    let node = graph
        .node
        .iter_mut()
        .find(|n| n.name() == "conv2d_1")
        .unwrap();
    for a in node.attribute.iter_mut() {
        match a.name() {
            "kernel_shape" => a.ints = vec![1, 1],
            "pads" => a.ints = vec![0, 0, 0, 0],
            _ => {}
        }
    }
    let out = dir.join("resnet8_float_1x1.onnx");
    std::fs::write(&out, proto.encode_to_vec()).unwrap();
    workbench(out.to_str().unwrap()).unwrap()
}

#[test]
fn float_references_that_do_not_fit_are_refused_by_name() {
    let m = w4();
    let data = dataset(Bundled::Lossless249);
    let one = AdaRoundOptions {
        iterations: 1,
        per_class: 1,
        ..Default::default()
    };
    let err = |float: &QuantModel| adaround(&m, float, &data, &one).unwrap_err().to_string();
    // Another architecture: the weight, the node and both shapes are named.
    let dir = tempfile::tempdir().unwrap();
    let e = err(&other_architecture(dir.path()));
    for says in [
        "`conv2d_1.weight` (module `conv2d_1`)",
        "[16, 16, 1, 1]",
        "the quantized module [16, 16, 3, 3]",
    ] {
        assert!(e.contains(says), "{e}");
    }
    // The same architecture with other weights (equalized): the weight is named.
    let (equalized, _) =
        qplay::quant::calibrate::equalize(&workbench("resnet8_float").unwrap()).unwrap();
    let e = err(&equalized);
    assert!(e.contains("adaround cannot round `conv2d"), "{e}");
    assert!(e.contains("is not the one it was made from"), "{e}");
    // A TorchScript model is no float reference.
    let e = err(&workbench("resnet8_int8_torch").unwrap());
    assert!(e.contains("the float reference of TorchScript"), "{e}");
    // The int8 model as it is, on a 4-bit grid: refused, with what to do.
    let four = AdaRoundOptions {
        weight_bits: Some(4),
        ..one
    };
    let int8 = workbench("resnet8_int8_torch").unwrap();
    let e = adaround(&int8, &workbench("resnet8_float").unwrap(), &data, &four)
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the 4-bit grid"), "{e}");
}
