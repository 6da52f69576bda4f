//! The registry and both backends against the bundled models: caching, shapes, clear errors.

use std::sync::Arc;

use qplay::data::{Bundled, Dataset};
use qplay::eval::{evaluate, quick, wilson, EvalOptions};
use qplay::model::Framework;
use qplay::registry::{available, load, load_count};

fn root() -> std::path::PathBuf {
    qplay::paths::root()
}

#[test]
fn bundled_models_are_listed() {
    let names = available();
    for want in [
        "resnet8_float",
        "resnet8_int8",
        "resnet8_uint8",
        "resnet8_int8_perchannel",
        "resnet8_float_torch",
        "resnet8_int8_torch",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}

#[test]
fn a_model_is_loaded_once_and_shared() {
    for name in ["resnet8_uint8", "resnet8_int8_torch"] {
        let a = load(name).unwrap();
        let b = load(name).unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "{name}: second load returned a new model"
        );
        let by_path = load(a.path().to_str().unwrap()).unwrap();
        assert!(
            Arc::ptr_eq(&a, &by_path),
            "{name}: load by path did not hit the cache"
        );
        assert_eq!(load_count(name), 1, "{name} was loaded more than once");
    }
}

#[test]
fn every_bundled_model_classifies_a_batch() {
    let data = Dataset::bundled(&root(), Bundled::Lossless249).unwrap();
    let batch = data.nhwc_batch(&[0, 1, 2, 3, 4, 5, 6, 7]);
    for name in available() {
        let model = load(&name).unwrap();
        assert_eq!(
            model.input_shape(),
            &[None, Some(32), Some(32), Some(3)],
            "{name}"
        );
        assert_eq!(model.output_shape(), &[None, Some(10)], "{name}");
        let want = if name.ends_with("_torch") {
            Framework::Torch
        } else {
            Framework::Onnx
        };
        assert_eq!(model.framework(), want, "{name}");
        let out = model.run(batch.view()).unwrap();
        assert_eq!(out.shape(), &[8, 10], "{name}");
        for row in out.rows() {
            let sum: f32 = row.sum();
            assert!(
                (sum - 1.0).abs() < 1e-3,
                "{name}: softmax row sums to {sum}"
            );
        }
    }
}

#[test]
fn unknown_names_and_bad_paths_are_explained() {
    let err = load("resnet9_int8").unwrap_err().to_string();
    assert!(err.contains("unknown model `resnet9_int8`"), "{err}");
    assert!(
        err.contains("resnet8_int8"),
        "the message should list bundled models: {err}"
    );

    let err = load("/nonexistent/model.onnx").unwrap_err().to_string();
    assert!(
        err.contains("/nonexistent/model.onnx") && err.contains("does not exist"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("weights.txt");
    std::fs::write(&txt, "hello").unwrap();
    let err = load(txt.to_str().unwrap()).unwrap_err().to_string();
    assert!(err.contains(".onnx") && err.contains(".pt"), "{err}");

    for file in ["broken.onnx", "broken.pt"] {
        let path = dir.path().join(file);
        std::fs::write(&path, b"definitely not a model").unwrap();
        let err = format!("{:#}", load(path.to_str().unwrap()).unwrap_err());
        assert!(err.contains(file), "error should name {file}: {err}");
    }
}

#[test]
fn wrong_input_shapes_are_refused_with_the_expected_shape() {
    for name in ["resnet8_int8", "resnet8_float_torch"] {
        let model = load(name).unwrap();
        for shape in [[1, 32, 32, 4], [2, 3, 32, 32], [0, 32, 32, 3]] {
            let bad = ndarray::Array4::<f32>::zeros(shape);
            let err = model.run(bad.view()).unwrap_err().to_string();
            assert!(
                err.contains("[N, 32, 32, 3]") && err.contains(name),
                "{err}"
            );
        }
    }
}

#[test]
fn evaluation_counts_add_up() {
    let data = Dataset::bundled(&root(), Bundled::Lossless249).unwrap();
    let model = load("resnet8_float").unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |done: usize, total: usize| seen.lock().unwrap().push((done, total));
    let options = EvalOptions {
        batch_size: 100,
        progress: Some(&progress),
    };
    let result = evaluate(model.as_ref(), &data, &options).unwrap();
    assert_eq!(result.total(), 249);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(100, 249), (200, 249), (249, 249)]
    );
    let confusion = result.confusion();
    assert_eq!(confusion.iter().flatten().sum::<usize>(), 249);
    let diagonal: usize = (0..10).map(|c| confusion[c][c]).sum();
    assert_eq!(diagonal, result.correct());
    let per_class = result.per_class();
    assert_eq!(per_class.iter().map(|c| c.total).sum::<usize>(), 249);
    assert_eq!(
        per_class.iter().map(|c| c.correct).sum::<usize>(),
        result.correct()
    );
    assert!(
        result.to_json().get("ci95").is_none(),
        "a full run has no interval"
    );
}

#[test]
fn quick_evaluation_is_stratified_with_an_interval() {
    let data = Dataset::bundled(&root(), Bundled::Test).unwrap();
    let model = load("resnet8_int8").unwrap();
    let result = quick(model.as_ref(), &data, 10).unwrap();
    assert_eq!(result.total(), 100);
    assert!(result.per_class().iter().all(|c| c.total == 10));
    let (lo, hi) = result.ci95();
    assert!(lo <= result.accuracy() && result.accuracy() <= hi);
    assert!(result.to_json()["ci95"].is_array());
    assert!(quick(model.as_ref(), &data, 0).is_err());
    let err = quick(model.as_ref(), &data, 1001).unwrap_err().to_string();
    assert!(err.contains("1001") || err.contains("1000"), "{err}");
}

#[test]
fn wilson_interval_matches_the_formula() {
    // 8 of 10: the textbook Wilson 95 % interval is 0.4902..0.9433.
    let (lo, hi) = wilson(8, 10);
    assert!(
        (lo - 0.4902).abs() < 1e-4 && (hi - 0.9433).abs() < 1e-4,
        "{lo} {hi}"
    );
    let (lo, hi) = wilson(0, 20);
    assert_eq!(lo, 0.0);
    assert!((hi - 0.1611).abs() < 1e-4, "{hi}");
    assert_eq!(wilson(0, 0), (0.0, 1.0));
}
