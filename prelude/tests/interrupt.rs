//! Cooperative interrupts: with the flag raised, every long operation of the prelude returns an
//! error that `qplay::runtime::interrupt::is_interrupted` recognizes, before doing its work; after
//! `clear()` they work again; and a raise from another thread stops a full evaluation between
//! two batches. The flag is process-wide, so this binary has one test that runs the cases in
//! order (its own process: other test binaries never see the flag).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use anyhow::Result;
use ndarray::ArrayView4;
use qplay::charts::tensor_histogram;
use qplay::data::{Bundled, Dataset};
use qplay::eval::{evaluate, evaluate_indices, quick, EvalOptions};
use qplay::quant::adaround::{adaround, adaround_with, AdaRoundOptions};
use qplay::quant::sqnr::layer_errors;
use qplay::quant::{
    agreement, compare_models, repair, sensitivity, sweep, workbench, Knob, QuantModel,
    RepairOptions,
};
use qplay::runtime::interrupt::{clear, is_interrupted, request};

/// The models the operations use.
struct Models {
    float: QuantModel,
    int8: QuantModel,
    torch: QuantModel,
}

/// A named operation.
type Operation<'a> = (&'static str, Box<dyn Fn() -> Result<()> + 'a>);

/// Every long operation, on small inputs (`few` images of `data`, `batch` their pixels), each
/// result reduced to `()`.
fn operations<'a>(
    data: &'a Dataset,
    few: &'a [usize],
    batch: ArrayView4<'a, f32>,
    models: &'a Models,
    progress: &'a dyn Fn(usize, usize),
) -> Vec<Operation<'a>> {
    let (float, int8, torch) = (&models.float, &models.int8, &models.torch);
    let options = move || EvalOptions {
        batch_size: 10,
        progress: Some(progress),
    };
    let edited = move |k: f32| int8.with_knob("activation_3", Knob::ScaleTimes(k));
    vec![
        (
            "evaluate",
            Box::new(move || evaluate(int8, data, &options()).map(drop)),
        ),
        (
            "evaluate_indices",
            Box::new(move || evaluate_indices(int8, data, few, false, &options()).map(drop)),
        ),
        ("quick", Box::new(move || quick(int8, data, 2).map(drop))),
        (
            "QuantModel::quick",
            Box::new(move || edited(1.7)?.quick(data, 2).map(drop)),
        ),
        (
            "QuantModel::evaluate",
            Box::new(move || edited(1.9)?.evaluate(data).map(drop)),
        ),
        (
            "QuantModel::capture (ONNX)",
            Box::new(move || edited(2.1)?.capture(batch.view(), &[]).map(drop)),
        ),
        (
            "QuantModel::capture (TorchScript)",
            Box::new(move || torch.capture(batch.view(), &["conv2d_2"]).map(drop)),
        ),
        (
            "tensor_histogram",
            Box::new(move || {
                tensor_histogram(&edited(2.3)?, "activation_3", Some(batch.view()), 0).map(drop)
            }),
        ),
        (
            "layer_errors",
            Box::new(move || layer_errors(float, &edited(2.5)?, data, few).map(drop)),
        ),
        (
            "sensitivity (bits)",
            Box::new(move || sensitivity(int8, data, 1, Knob::Bits(5), false).map(drop)),
        ),
        (
            "sweep",
            Box::new(move || {
                sweep(
                    int8,
                    "activation_3",
                    &[Knob::ScaleTimes(0.7), Knob::ScaleTimes(1.4)],
                    data,
                    1,
                )
                .map(drop)
            }),
        ),
        (
            "compare_models",
            Box::new(move || {
                compare_models("resnet8_float", &["resnet8_int8"], data, Some(1)).map(drop)
            }),
        ),
        (
            "agreement",
            Box::new(move || agreement(int8, torch, data, few).map(drop)),
        ),
        (
            "repair",
            Box::new(move || {
                let options = RepairOptions {
                    calib_per_class: 1,
                    holdout_per_class: 1,
                    max_float: Some(1),
                    ..Default::default()
                };
                repair(&edited(3.1)?, float, data, &options).map(drop)
            }),
        ),
        (
            "adaround",
            Box::new(move || {
                let options = AdaRoundOptions {
                    iterations: 2,
                    per_class: 1,
                    ..Default::default()
                };
                adaround(int8, float, data, &options).map(drop)
            }),
        ),
    ]
}

#[test]
fn long_operations_stop_when_interrupted_and_work_again_after_clear() {
    let dir = std::env::temp_dir().join(format!("qplay-interrupt-{}", std::process::id()));
    std::env::set_var("QPLAY_CACHE", &dir);
    let data = Dataset::bundled(&qplay::paths::root(), Bundled::Lossless249).unwrap();
    let models = Models {
        float: workbench("resnet8_float").unwrap(),
        int8: workbench("resnet8_int8").unwrap(),
        torch: workbench("resnet8_int8_torch").unwrap(),
    };
    let few: Vec<usize> = (0..20).collect();
    let batch = data.nhwc_batch(&few);
    let batches = AtomicUsize::new(0);
    let progress = |_: usize, _: usize| {
        batches.fetch_add(1, Ordering::Relaxed);
    };

    clear();
    request();
    for (name, op) in operations(&data, &few, batch.view(), &models, &progress) {
        let e = op().expect_err(name);
        assert!(is_interrupted(&e), "{name}: {e:#}");
    }
    assert_eq!(
        batches.load(Ordering::Relaxed),
        0,
        "a batch ran while interrupted"
    );
    // Nothing half-done was cached: after clear() every operation runs (the evaluations
    // report their batches) and succeeds.
    clear();
    for (name, op) in operations(&data, &few, batch.view(), &models, &progress) {
        op().unwrap_or_else(|e| panic!("{name} after clear(): {e:#}"));
    }
    assert!(batches.load(Ordering::Relaxed) > 0);

    // A raise from another thread while a full evaluation of the 10,000 test images runs:
    // raised once the first batch is done, it stops the evaluation before the last one.
    let test = Dataset::bundled(&qplay::paths::root(), Bundled::Test).unwrap();
    let model = qplay::registry::load("resnet8_int8").unwrap();
    let (started, raise) = mpsc::channel::<()>();
    let raiser = std::thread::spawn(move || {
        if raise.recv().is_ok() {
            request();
        }
    });
    let done = AtomicUsize::new(0);
    let progress = |n: usize, _: usize| {
        if done.swap(n, Ordering::Relaxed) == 0 {
            let _ = started.send(());
        }
    };
    let options = EvalOptions {
        progress: Some(&progress),
        ..Default::default()
    };
    let result = evaluate(model.as_ref(), &test, &options);
    raiser.join().unwrap();
    let e = result.expect_err("the full evaluation ran to the end");
    assert!(is_interrupted(&e), "{e:#}");
    let done = done.load(Ordering::Relaxed);
    assert!(done > 0 && done < test.len(), "stopped after {done} images");
    eprintln!(
        "{}: interrupted after {done} of {} images",
        model.name(),
        test.len()
    );
    clear();
    assert_eq!(
        evaluate_indices(model.as_ref(), &test, &[0, 1], false, &Default::default())
            .unwrap()
            .total(),
        2
    );

    // AdaRound, raised between two iterations of its second layer: an interrupted error, and
    // the model it was given is as it was (a QDQ ONNX and a TorchScript model).
    let raise = |what: &str, done: usize, _: usize| {
        if what.contains("conv2d_1") && done >= 50 {
            request();
        }
    };
    let options = AdaRoundOptions {
        iterations: 1000,
        per_class: 1,
        ..Default::default()
    };
    for (m, what) in [(&models.int8, "ONNX"), (&models.torch, "TorchScript")] {
        let before = m.content_hash().unwrap();
        let e = adaround_with(m, &models.float, &data, &options, Some(&raise))
            .expect_err("AdaRound ran to the end");
        assert!(is_interrupted(&e), "{what}: {e:#}");
        clear();
        assert_eq!(m.content_hash().unwrap(), before, "{what}");
        assert_eq!(m.version(), 0, "{what}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
