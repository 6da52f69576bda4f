//! Every workbench chart renders as SVG with its labels as text. With $QPLAY_CHART_DIR set, the
//! SVGs are written there (to look at them, e.g. rendered to PNG by headless Chromium).

mod common;

use qplay::charts::{
    confusion_chart, per_class_chart, sensitivity_chart, sqnr_chart, sweep_chart, tensor_histogram,
};
use qplay::data::Bundled;
use qplay::eval::quick;
use qplay::quant::sqnr::layer_errors;
use qplay::quant::{sensitivity, sweep, workbench, Knob};

use common::{dataset, keep};

#[test]
fn every_chart_renders() {
    let data = dataset(Bundled::Lossless249);
    let batch = data.nhwc_batch(&(0..32).collect::<Vec<_>>());
    let m = workbench("resnet8_int8").unwrap();
    let pc = workbench("resnet8_int8_perchannel").unwrap();

    let h = tensor_histogram(&m, "activation_2", Some(batch.view()), 0).unwrap();
    assert!(h.0.contains("saturated"));
    keep("histogram_activation", &h);
    keep(
        "histogram_weight_4bit",
        &m.with_bits("conv2d_1.weight", 4)
            .unwrap()
            .histogram("conv2d_1.weight")
            .unwrap(),
    );
    keep(
        "histogram_perchannel",
        &tensor_histogram(&pc, "conv2d_3.weight", None, 5).unwrap(),
    );

    let float = workbench("resnet8_float").unwrap();
    let errors = layer_errors(&float, &m, &data, &(0..32).collect::<Vec<_>>()).unwrap();
    let svg = sqnr_chart(&errors).unwrap();
    assert!(svg.0.contains("xmodel_err") && svg.0.contains("ReLU folded"));
    keep("sqnr", &svg);

    let torch = qplay::registry::load("resnet8_int8_torch").unwrap();
    let float_e = quick(&float, &data, 15).unwrap();
    let int8_e = quick(&m, &data, 15).unwrap();
    let torch_e = quick(torch.as_ref(), &data, 15).unwrap();
    let svg = per_class_chart(&[&float_e, &int8_e, &torch_e]).unwrap();
    assert!(svg.0.contains("airplane") && svg.0.contains("resnet8_int8_torch"));
    keep("per_class", &svg);
    keep("confusion", &confusion_chart(&int8_e).unwrap());

    let s = sweep(
        &m,
        "activation_3",
        &[0.25, 0.5, 1.0, 2.0, 4.0].map(Knob::ScaleTimes),
        &data,
        5,
    )
    .unwrap();
    keep("sweep", &sweep_chart(&s).unwrap());
    let s = sensitivity(&m, &data, 5, Knob::Bits(3), false).unwrap();
    keep("sensitivity", &sensitivity_chart(&s).unwrap());
}
