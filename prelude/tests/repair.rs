//! Automatic repair: a damaged layer is found first and the repaired model recovers on images
//! the ranking did not see; a budget out of range is a named error. Each test process uses its
//! own cache folder ($QPLAY_CACHE), set before anything reads it.

mod common;

use qplay::data::Bundled;
use qplay::model::Model;
use qplay::quant::{repair, workbench, RepairOptions};

use common::dataset;

fn message(r: anyhow::Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

#[test]
fn a_budget_out_of_range_is_a_named_error() {
    let data = dataset(Bundled::Lossless249);
    let m = workbench("resnet8_int8").unwrap();
    let float = workbench("resnet8_float").unwrap();
    for budget in [-1.0, 100.5, f64::NAN] {
        let options = RepairOptions {
            budget_pp: budget,
            ..Default::default()
        };
        let e = message(repair(&m, &float, &data, &options));
        assert!(e.contains("budget") && e.contains("0 to 100"), "{e}");
    }
}

/// The playground's damage — one activation's scale × 4 — is what repair keeps in float first,
/// and the repaired model is back within the budget on held-out images the ranking never saw.
#[test]
fn repair_finds_the_damaged_layer_first_and_recovers_on_unseen_images() {
    let test = dataset(Bundled::Test);
    let m = workbench("resnet8_int8").unwrap();
    let float = workbench("resnet8_float").unwrap();
    let damaged_tensor = "average_pooling2d";
    let k4: Vec<f32> = m
        .param(damaged_tensor)
        .unwrap()
        .scales
        .iter()
        .map(|s| s * 4.0)
        .collect();
    let damaged = m.with_scales(damaged_tensor, &k4).unwrap();
    let options = RepairOptions {
        budget_pp: 0.5,
        calib_per_class: 100,
        holdout_per_class: 100,
        ..Default::default()
    };
    let r = repair(&damaged, &float, &test, &options).unwrap();
    eprintln!("{r}");
    assert_eq!((r.calib_images, r.holdout_images), (1000, 1000));
    assert_eq!(r.ranking.len(), damaged.quant_params().rows.len());
    assert_eq!(
        r.ranking[0].tensor, damaged_tensor,
        "ranking: {:?}",
        r.ranking
    );
    assert_eq!(r.kept[0], damaged_tensor);
    let second = r.ranking[1].gain_pp;
    assert!(
        r.ranking[0].gain_pp > second + 1.0,
        "the damaged layer gains {:.2} pp, the next {second:.2} pp",
        r.ranking[0].gain_pp
    );
    assert!(r.within_budget, "calibration split: {r}");
    let (before, after) = r.holdout();
    assert!(after > before, "held-out {before} → {after}");
    assert!(r.holdout_within_budget, "held-out: {r}");
    assert_eq!(r.steps.len(), r.kept.len() + 1);
    // One edit on top of the damaged version; undo goes back to it.
    assert_eq!(r.version.version(), damaged.version() + 1);
    assert_eq!(
        r.version.undo().unwrap().content_hash().unwrap(),
        damaged.content_hash().unwrap()
    );
    let html = qplay::display::Rich::mime_bundle(&r)["text/html"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(html.contains("<svg") && html.contains("held-out"), "{html}");
    assert!(r.to_string().contains("the ranking did not see"));
    assert_eq!(r.version.name(), format!("{}@v2", m.name()));
}

/// With a wider type allowed, a damaged weight is stored as int16 instead of kept in float: still
/// quantized, and the accuracy back; a type that is not wider is a named error.
#[test]
fn repair_can_store_a_damaged_weight_at_a_wider_type() {
    use qplay::quant::QDtype;
    let test = dataset(Bundled::Test);
    let m = workbench("resnet8_int8").unwrap();
    let float = workbench("resnet8_float").unwrap();
    let damaged = m.with_bits("conv2d.weight", 2).unwrap();
    let options = RepairOptions {
        budget_pp: 1.0,
        calib_per_class: 20,
        holdout_per_class: 20,
        wider: Some(QDtype::Int16),
        ..Default::default()
    };
    let r = repair(&damaged, &float, &test, &options).unwrap();
    eprintln!("{r}");
    assert_eq!(r.ranking[0].tensor, "conv2d.weight", "{r}");
    assert_eq!(r.steps[1].tensor, "conv2d.weight");
    assert_eq!(r.steps[1].form, "int16");
    assert_eq!(r.widened[0], "conv2d.weight");
    assert!(!r.kept.contains(&"conv2d.weight".to_string()));
    let p = r.version.param("conv2d.weight").unwrap();
    assert_eq!(p.dtype, QDtype::Int16);
    assert!(r.steps[1].accuracy > r.steps[0].accuracy + 0.05, "{r}");
    assert!(r
        .version
        .history()
        .last()
        .unwrap()
        .contains("stored as int16"));
    let e = message(repair(
        &damaged,
        &float,
        &test,
        &RepairOptions {
            wider: Some(QDtype::Int4),
            ..options
        },
    ));
    assert!(e.contains("int4 is not wider than 8 bits"), "{e}");
}
