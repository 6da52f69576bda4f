//! Real low-bit and wide types: int4/uint4 and int16/uint16 QDQ models calibrated, saved,
//! loaded back, edited and measured. A 4-bit model stores its weights packed two per byte (half
//! the bytes of int8) in an opset-21 model; bad types and widths are refused by name.

mod common;

use qplay::data::Bundled;
use qplay::model::Model;
use qplay::quant::calibrate::{calibrate, CalibOptions};
use qplay::quant::onnx_graph::{self, proto::ModelProto};
use qplay::quant::{sqnr::layer_errors, workbench, NoCpuKernel, QDtype, QuantModel, Role};

use common::{dataset, first_of};

fn calibrated(weight: QDtype, activation: QDtype) -> QuantModel {
    let options = CalibOptions {
        per_channel: true,
        per_class: 10,
        ..Default::default()
    }
    .with_weight_type(weight)
    .with_activation_type(activation);
    calibrate("resnet8_float", &dataset(Bundled::Train4000), &options).unwrap()
}

/// Bytes of every weight's stored integers (raw data), by weight name.
fn weight_bytes(m: &QuantModel) -> Vec<(String, usize)> {
    let proto = m.proto().unwrap();
    m.quant_params()
        .rows
        .iter()
        .filter(|r| r.role == Role::Weight)
        .map(|r| {
            let init = r.quantized_initializer.as_deref().unwrap();
            let t = onnx_graph::initializer(proto, init).unwrap();
            (r.tensor.clone(), t.raw_data.as_ref().unwrap().len())
        })
        .collect()
}

fn opset(p: &ModelProto) -> i64 {
    p.opset_import
        .iter()
        .find(|o| o.domain().is_empty())
        .unwrap()
        .version()
}

fn saved_and_loaded(m: &QuantModel, name: &str) -> (QuantModel, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("qplay-lowbit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    m.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (workbench(path.to_str().unwrap()).unwrap(), bytes)
}

fn same_outputs(a: &QuantModel, b: &QuantModel) {
    let test = dataset(Bundled::Lossless249);
    let idx: Vec<usize> = (0..50).collect();
    let x = test.nhwc_batch(&idx);
    assert_eq!(a.run(x.view()).unwrap(), b.run(x.view()).unwrap());
}

#[test]
fn int4_weights_are_packed_two_per_byte_and_round_trip() {
    let w8 = calibrated(QDtype::Int8, QDtype::Int8);
    let w4 = calibrated(QDtype::Int4, QDtype::Int8);
    let (b8, b4) = (weight_bytes(&w8), weight_bytes(&w4));
    assert_eq!(b8.len(), 10);
    for ((n8, s8), (n4, s4)) in b8.iter().zip(&b4) {
        assert_eq!(n8, n4);
        assert_eq!(*s4, s8.div_ceil(2), "{n4}: half the bytes of int8");
    }
    let total = |b: &[(String, usize)]| b.iter().map(|(_, s)| s).sum::<usize>();
    println!("weight bytes: int8 {}, int4 {}", total(&b8), total(&b4));

    let proto = w4.proto().unwrap();
    assert!(opset(proto) >= 21 && proto.ir_version() >= 10);
    assert_eq!(
        opset(w8.proto().unwrap()),
        17,
        "an int8 model keeps its opset"
    );

    let (back, bytes) = saved_and_loaded(&w4, "w4.onnx");
    for r in w4.quant_params().rows {
        let o = back.param(&r.tensor).unwrap();
        assert_eq!(o.dtype, r.dtype, "{}", r.tensor);
        assert_eq!(o.zero_points, r.zero_points, "{}", r.tensor);
        if r.role == Role::Weight {
            assert_eq!(r.dtype, QDtype::Int4);
            let (a, b) = (
                w4.weights(&r.tensor).unwrap(),
                back.weights(&r.tensor).unwrap(),
            );
            assert_eq!(a.int, b.int, "{}", r.tensor);
            assert!(
                a.int.iter().all(|&v| (-7..=7).contains(&v)),
                "symmetric int4"
            );
            assert!(
                a.int.iter().any(|&v| v < 0),
                "signed values unpack as negatives"
            );
        }
    }
    let (_, again) = saved_and_loaded(&back, "w4-again.onnx");
    assert_eq!(bytes, again, "save → load → save is byte for byte");
    same_outputs(&w4, &back);
}

#[test]
fn int16_activations_and_uint4_weights_round_trip() {
    let m = calibrated(QDtype::Uint4, QDtype::Int16);
    let params = m.quant_params();
    for r in &params.rows {
        let want = match r.role {
            Role::Activation => QDtype::Int16,
            Role::Weight => QDtype::Uint4,
            Role::Bias => QDtype::Int32,
        };
        assert_eq!(r.dtype, want, "{}", r.tensor);
    }
    // Per-channel symmetric uint4 weights: zero point 8 (the middle of 0..15) per channel.
    let w = params.rows.iter().find(|r| r.role == Role::Weight).unwrap();
    assert!(w.zero_points.len() > 1 && w.zero_points.iter().all(|&z| z == 8));
    let (back, _) = saved_and_loaded(&m, "a16w4u.onnx");
    assert_eq!(back.quant_params().rows, params.rows);
    same_outputs(&m, &back);
}

#[test]
fn edits_and_sqnr_work_on_low_bit_models() {
    let m = calibrated(QDtype::Int4, QDtype::Int16);
    let w = m
        .quant_params()
        .rows
        .into_iter()
        .find(|r| r.role == Role::Weight)
        .unwrap();
    let a = m
        .quant_params()
        .rows
        .into_iter()
        .find(|r| r.role == Role::Activation)
        .unwrap();

    // Integers outside int4, a width that does not fit it: named errors, nothing changes.
    let mut ints = m.weights(&w.tensor).unwrap().int;
    ints.iter_mut().for_each(|v| *v = 8);
    let e = m.with_weight_int(&w.tensor, &ints).unwrap_err().to_string();
    assert!(e.contains("int4 allows -8..=7"), "{e}");
    let e = m.with_bits(&w.tensor, 5).unwrap_err().to_string();
    assert!(
        e.contains(&w.tensor) && e.contains("2 to 4 bits fit int4"),
        "{e}"
    );
    let e = m
        .with_zero_point(&a.tensor, 40_000)
        .unwrap_err()
        .to_string();
    assert!(e.contains("int16 allows -32768..=32767"), "{e}");
    assert_eq!(m.history().len(), 0);

    // A narrower grid inside int4, and a 16-bit zero point, save and load as the same types.
    let v = m
        .with_bits(&w.tensor, 3)
        .unwrap()
        .with_zero_point(&a.tensor, 1000)
        .unwrap();
    assert!(v
        .weights(&w.tensor)
        .unwrap()
        .int
        .iter()
        .all(|&x| (-3..=3).contains(&x)));
    let (back, _) = saved_and_loaded(&v, "edited.onnx");
    assert_eq!(back.param(&w.tensor).unwrap().dtype, QDtype::Int4);
    assert_eq!(back.param(&a.tensor).unwrap().zero_points, [1000]);
    assert_eq!(
        back.weights(&w.tensor).unwrap().int,
        v.weights(&w.tensor).unwrap().int
    );

    let float = workbench("resnet8_float").unwrap();
    let test = dataset(Bundled::Lossless249);
    let idx: Vec<usize> = (0..20).collect();
    let errors = layer_errors(&float, &m, &test, &idx).unwrap();
    assert_eq!(errors.rows.len(), 16, "every activation's QDQ pair");
    for r in &errors.rows {
        assert!(r.qdq_err.is_finite(), "{}", r.tensor);
        assert!(r.xmodel_err.is_some_and(f64::is_finite), "{}", r.tensor);
    }
    // 16-bit activations barely add error: the first layer's QDQ error is tiny.
    let first = errors.rows.iter().find(|r| !r.relu_folded).unwrap();
    assert!(first.qdq_err > 60.0, "{first:?}");
}

#[test]
fn bad_types_and_widths_are_refused_by_name() {
    let data = dataset(Bundled::Train4000);
    let go = |o: CalibOptions| calibrate("resnet8_float", &data, &o).unwrap_err();
    let e = go(CalibOptions {
        weight_type: QDtype::Int4,
        ..Default::default()
    })
    .to_string();
    assert_eq!(e, "weight_bits = 8 is out of range: 2 to 4 bits fit int4");
    let e = go(CalibOptions {
        activation_type: QDtype::Int32,
        ..Default::default()
    })
    .to_string();
    assert!(
        e.contains("activation_type = int32 is not allowed") && e.contains("uint16"),
        "{e}"
    );
    let e = go(CalibOptions::default().with_activation_type(QDtype::Uint4));
    let gap = e
        .downcast_ref::<NoCpuKernel>()
        .expect("a NoCpuKernel error");
    assert_eq!((gap.weight, gap.activation), (QDtype::Int8, QDtype::Uint4));
    assert!(e.to_string().contains("QLinearConv"), "{e}");
    let e = "int5".parse::<QDtype>().unwrap_err().to_string();
    assert!(
        e.contains("int5") && e.contains("int4, uint4, int8, uint8, int16, uint16"),
        "{e}"
    );
}

#[test]
fn adaround_rounds_int4_weights_in_their_own_type() {
    use qplay::quant::{adaround, AdaRoundOptions};
    let m = calibrated(QDtype::Int4, QDtype::Int8);
    let float = workbench("resnet8_float").unwrap();
    let options = AdaRoundOptions {
        weight_bits: Some(4),
        iterations: 200,
        per_class: 2,
        ..Default::default()
    };
    let v = adaround(&m, &float, &dataset(Bundled::Train4000), &options).unwrap();
    let (back, _) = saved_and_loaded(&v, "ada4.onnx");
    let mut changed = 0;
    for r in m
        .quant_params()
        .rows
        .iter()
        .filter(|r| r.role == Role::Weight)
    {
        assert_eq!(back.param(&r.tensor).unwrap().dtype, QDtype::Int4);
        let (before, after) = (
            m.weights(&r.tensor).unwrap().int,
            back.weights(&r.tensor).unwrap().int,
        );
        assert!(after.iter().all(|&x| (-7..=7).contains(&x)), "{}", r.tensor);
        changed += before.iter().zip(&after).filter(|(a, b)| a != b).count();
    }
    assert!(changed > 0, "AdaRound rounded some weights the other way");
    let e = adaround(
        &m,
        &float,
        &dataset(Bundled::Train4000),
        &AdaRoundOptions {
            weight_bits: Some(6),
            ..options
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("2 to 4 bits fit int4"), "{e}");
}

#[test]
fn with_type_stores_one_weight_in_another_type() {
    // The bundled int8 model with one weight re-stored as int4: that weight packed, the others
    // untouched, opset 21, undo back to the original; a sensitivity sweep over real int4 weights.
    let int8 = workbench("resnet8_int8").unwrap();
    let v = int8.with_type("conv2d_7.weight", QDtype::Int4).unwrap();
    assert_eq!(v.param("conv2d_7.weight").unwrap().dtype, QDtype::Int4);
    assert_eq!(int8.param("conv2d_7.weight").unwrap().dtype, QDtype::Int8);
    assert!(opset(v.proto().unwrap()) >= 21 && opset(int8.proto().unwrap()) < 21);
    let before: std::collections::BTreeMap<_, _> = weight_bytes(&int8).into_iter().collect();
    for (t, bytes) in weight_bytes(&v) {
        if t == "conv2d_7.weight" {
            assert_eq!(bytes, before[&t].div_ceil(2), "{t}");
        } else {
            assert_eq!(bytes, before[&t], "{t}");
        }
    }
    let ints = v.weights("conv2d_7.weight").unwrap().int;
    assert!(ints.iter().all(|q| (-7..=7).contains(q)) && ints.iter().any(|&q| q == -7 || q == 7));
    assert!(v.history().last().unwrap().contains("stored as int4"));
    assert_eq!(
        v.undo().unwrap().content_hash().unwrap(),
        int8.content_hash().unwrap()
    );
    let (loaded, _) = saved_and_loaded(&v, "with_type.onnx");
    same_outputs(&v, &loaded);
    // Its grid is with_bits(4)'s, in a 4-bit container.
    let narrow = int8.with_bits("conv2d_7.weight", 4).unwrap();
    assert_eq!(
        narrow.param("conv2d_7.weight").unwrap().scales,
        v.param("conv2d_7.weight").unwrap().scales
    );
    assert_eq!(narrow.weights("conv2d_7.weight").unwrap().int, ints);
    // A sensitivity sweep over real int4 weights: one row per weight.
    let test = dataset(Bundled::Test);
    let s = qplay::quant::sensitivity(
        &int8,
        &test,
        2,
        qplay::quant::Knob::Type(QDtype::Int4),
        false,
    )
    .unwrap();
    assert_eq!(s.rows.len(), 10);
    assert_eq!(s.knob.to_string(), "int4");
    // Refused by name: an activation, a type that is not stored, TorchScript.
    let activation = first_of(&int8, Role::Activation);
    let e = int8
        .with_type(&activation, QDtype::Int4)
        .unwrap_err()
        .to_string();
    assert!(e.contains("with_type re-quantizes weights"), "{e}");
    let e = int8
        .with_type("conv2d_7.weight", QDtype::Int32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("int32"), "{e}");
    let torch = workbench("resnet8_int8_torch").unwrap();
    let w = first_of(&torch, Role::Weight);
    let e = torch.with_type(&w, QDtype::Int4).unwrap_err().to_string();
    assert!(e.contains("TorchScript"), "{e}");
}
