//! Keeping a tensor in float: QDQ pairs removed and readers rewired, weights as float
//! constants, undo/diff/save, and named errors. Each test process uses its own cache folder
//! ($QPLAY_CACHE), set before anything reads it.

mod common;

use qplay::data::Bundled;
use qplay::quant::onnx_graph::{floats, initializer, qdq_counts};
use qplay::quant::{workbench, Role};

use common::dataset;

fn message(r: anyhow::Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

/// An activation kept in float: one QDQ pair fewer, the readers rewired, one edit in the log
/// (undo goes back to the same bytes), a diff row, and the saved file reopens with the same
/// table.
#[test]
fn an_activation_kept_in_float_loses_its_qdq_pair_and_undoes() {
    let data = dataset(Bundled::Lossless249);
    let m = workbench("resnet8_int8").unwrap();
    let v = m.keep_float("activation_3").unwrap();
    assert_eq!(v.version(), 1);
    assert_eq!(
        v.history()[0],
        "activation_3 kept in float (a Relu keeps its clipping at 0)"
    );
    assert_eq!(v.quant_params().rows.len(), m.quant_params().rows.len() - 1);
    let (q0, dq0) = qdq_counts(m.proto().unwrap());
    assert_eq!(qdq_counts(v.proto().unwrap()), (q0 - 1, dq0 - 1));
    // conv2d_4 now reads the float activation, through the ReLU the QDQ pair folded.
    let g = v.proto().unwrap().graph.clone().unwrap();
    let conv = g.node.iter().find(|n| n.name() == "conv2d_4").unwrap();
    assert_eq!(conv.input[0], "activation_3_relu");
    let relu = g.node.iter().position(|n| n.op_type() == "Relu").unwrap();
    assert_eq!(g.node[relu].input, ["activation_3"]);
    let conv3 = g.node.iter().position(|n| n.name() == "conv2d_3").unwrap();
    assert_eq!(relu, conv3 + 1);
    assert!(v.param("activation_3").is_err());
    let diff = v.diff();
    assert!(
        diff.rows
            .iter()
            .any(|r| r.tensor == "activation_3" && r.after == "kept in float"),
        "{diff}"
    );
    assert_eq!(
        v.undo().unwrap().content_hash().unwrap(),
        m.content_hash().unwrap()
    );
    // It runs, and predicts (nearly) as the quantized model: one activation fewer rounded.
    let (a, b) = (m.quick(&data, 10).unwrap(), v.quick(&data, 10).unwrap());
    let same = a
        .predictions
        .iter()
        .zip(&b.predictions)
        .filter(|(x, y)| x == y)
        .count();
    eprintln!(
        "int8 {:.2} %, activation_3 in float {:.2} %, same prediction {same}/{}",
        100.0 * a.accuracy(),
        100.0 * b.accuracy(),
        a.total()
    );
    assert!(same as f64 >= 0.95 * a.total() as f64);
    let path = std::env::temp_dir().join(format!("keep-float-{}.onnx", std::process::id()));
    v.save(&path).unwrap();
    let again = workbench(path.to_str().unwrap()).unwrap();
    assert_eq!(again.quant_params().rows, v.quant_params().rows);
    assert_eq!(
        again.quick(&data, 10).unwrap().predictions,
        b.predictions,
        "the saved file predicts as the version"
    );
    let _ = std::fs::remove_file(path);
}

/// A weight kept in float becomes a float initializer: the float model's weights with
/// keep_float_from, the dequantized values with keep_float; its integers, scale and zero point
/// go when nothing else reads them.
#[test]
fn a_weight_kept_in_float_gets_the_float_models_values_or_the_dequantized_ones() {
    let m = workbench("resnet8_int8").unwrap();
    let float = workbench("resnet8_float").unwrap();
    let from_float = m.keep_float_from("conv2d_3.weight", &float).unwrap();
    assert_eq!(
        from_float.history()[0],
        "conv2d_3.weight kept in float (resnet8_float's weights)"
    );
    let proto = from_float.proto().unwrap();
    let w = floats(initializer(proto, "conv2d_3.weight").unwrap()).unwrap();
    let want = floats(initializer(float.proto().unwrap(), "conv2d_3.weight").unwrap()).unwrap();
    assert_eq!(w, want);
    for gone in [
        "conv2d_3.weight_quantized",
        "conv2d_3.weight_scale",
        "conv2d_3.weight_zero_point",
    ] {
        assert!(initializer(proto, gone).is_none(), "{gone} is still there");
    }
    let conv = proto
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .find(|n| n.name() == "conv2d_3")
        .unwrap();
    assert_eq!(conv.input[1], "conv2d_3.weight");

    let dequantized = m.keep_float("conv2d_3.weight").unwrap();
    let w = floats(initializer(dequantized.proto().unwrap(), "conv2d_3.weight").unwrap()).unwrap();
    let expected: Vec<f32> = m
        .weights("conv2d_3.weight")
        .unwrap()
        .dequantized
        .iter()
        .copied()
        .collect();
    assert_eq!(w, expected);
    assert!(w != want, "dequantized values equal the float ones");
    // A bias: its DequantizeLinear output name becomes the float initializer.
    let b = m.keep_float_from("conv2d_3.bias", &float).unwrap();
    assert!(initializer(b.proto().unwrap(), "conv2d_3.bias").is_some());
    assert_eq!(
        b.quant_params().count(Role::Bias),
        m.quant_params().count(Role::Bias) - 1
    );
}

/// Unknown, float, already-kept tensors and TorchScript models are named errors; nothing
/// changes.
#[test]
fn keep_float_names_what_it_cannot_take() {
    let m = workbench("resnet8_int8").unwrap();
    let e = message(m.keep_float("no_such_tensor"));
    assert!(
        e.contains("`no_such_tensor`")
            && e.contains("not a tensor of the model")
            && e.contains("activation_3"),
        "{e}"
    );
    let e = message(m.keep_float("input"));
    assert!(
        e.contains("`input`") && e.contains("is not quantized"),
        "{e}"
    );
    let v = m.keep_float("activation_3").unwrap();
    let e = message(v.keep_float("activation_3"));
    assert!(e.contains("already in float"), "{e}");
    assert_eq!(m.version(), 0);
    assert_eq!(v.version(), 1);
    let torch = workbench("resnet8_int8_torch").unwrap();
    let tensor = torch.quant_params().rows[0].tensor.clone();
    let e = message(torch.keep_float(&tensor));
    assert!(
        e.contains("TorchScript") && e.contains("use the ONNX model"),
        "{e}"
    );
}
