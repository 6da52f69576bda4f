"""`qplay calibrate` against onnxruntime's `quantize_static`, run here with the same options on the
same images: the same graph, the same scales and zero points (MinMax bit for bit, the histogram
methods to 1e-6 relative), the same integers, and a model that Python onnxruntime runs with the
predictions qplay gives."""

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from conftest import ROOT, THREADS

import reference

TRAIN = ROOT / "data/cifar10/train_first4000_lossless.bin"
TEST = ROOT / "data/cifar10/test_batch_jpeg75.bin"

CASES = [
    # method, flags, exact
    ("minmax", [], True),
    ("minmax", ["--symmetric"], True),
    ("minmax", ["--activation-type", "uint8", "--weight-type", "uint8", "--per-channel"], True),
    ("percentile:99.99", ["--per-channel"], False),
    ("percentile:99.999", ["--activation-type", "uint8", "--weight-type", "uint8"], False),
    ("entropy", [], False),
]


def reference_model(tmp_path, method, flags):
    out = tmp_path / "reference.onnx"
    subprocess.run(
        [sys.executable, ROOT / "scripts/calibrate_reference.py", "--float", ROOT / "models/resnet8_float.onnx",
         "--out", out, "--data", TRAIN, "--method", method, *flags],
        check=True, capture_output=True, text=True,
    )
    return out


def initializers(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def nodes(path):
    return sorted((n.name, n.op_type, tuple(n.input), tuple(n.output)) for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("method,flags,exact", CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_calibration_matches_quantize_static(qplay, tmp_path, method, flags, exact):
    ours = tmp_path / "ours.onnx"
    summary = json.loads(qplay("calibrate", "--method", method, *flags, "--out", ours, "--json").stdout)
    assert summary["images"] == 1000
    theirs = reference_model(tmp_path, method, flags)

    assert nodes(ours) == nodes(theirs), "the QDQ graphs differ"
    a, b = initializers(ours), initializers(theirs)
    assert sorted(a) == sorted(b)
    for name in sorted(a):
        x, y = a[name], b[name]
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if name.endswith("_scale") and not exact:
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=0, err_msg=name)
        else:
            assert np.array_equal(x, y), f"{name}: {x.ravel()[:4]} vs {y.ravel()[:4]}"

    if method == "minmax" and not flags:
        # The defaults are models/build.py's: the bundled model, initializer for initializer.
        bundled = initializers(ROOT / "models/resnet8_int8.onnx")
        assert sorted(bundled) == sorted(a)
        assert all(np.array_equal(a[n], bundled[n]) for n in a)

    # The file runs in Python onnxruntime and predicts as qplay does, and as the reference model.
    images, _ = reference.load_cifar(TEST)
    images = images[:1000]
    python_ours = reference.Runner(ours, THREADS).predict(images, 100)
    python_theirs = reference.Runner(theirs, THREADS).predict(images, 100)
    saved = tmp_path / "predictions.txt"
    qplay("eval", "--model", ours, "--limit", 1000, "--save-predictions", saved, "--batch-size", 100)
    rust = np.loadtxt(saved, dtype=np.uint8)
    assert np.array_equal(python_ours, rust)
    assert np.array_equal(python_ours, python_theirs)


def test_bad_options_are_refused_by_name(qplay, tmp_path):
    proc = qplay("calibrate", "--method", "percentile:101", "--out", tmp_path / "x.onnx", check=False)
    assert proc.returncode != 0 and "0 < percentile <= 100" in proc.stderr
    proc = qplay("calibrate", "--weight-bits", "1", "--out", tmp_path / "x.onnx", check=False)
    assert proc.returncode != 0 and "weight_bits = 1 is out of range: 2 to 8 bits" in proc.stderr
    proc = qplay("calibrate", "--float", "resnet8_int8", "--out", tmp_path / "x.onnx", check=False)
    assert proc.returncode != 0 and "already has QuantizeLinear" in proc.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_mixed_precision_json(qplay, tmp_path):
    out = tmp_path / "mixed.onnx"
    r = json.loads(qplay("mixed-precision", "--budget", "1", "--per-class", "10", "--out", out, "--json").stdout)
    assert r["accuracy"] >= r["base_accuracy"] - 0.01 - 1e-12
    assert r["bytes"] <= r["base_bytes"]
    assert set(r["bits"].values()) <= {4, 6, 8}
    assert any(p["kept"] for p in r["points"])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.run(None, {session.get_inputs()[0].name: np.zeros((2, 32, 32, 3), np.float32)})[0].shape == (2, 10)


def test_source_models_are_never_overwritten(qplay, tmp_path):
    float_model = ROOT / "models/resnet8_float.onnx"
    before = float_model.read_bytes()
    proc = qplay("calibrate", "--out", float_model, check=False)
    assert proc.returncode != 0 and "would overwrite the model it came from" in proc.stderr
    proc = qplay("calibrate", "--out", ROOT / "models/resnet8_int8.onnx", check=False)
    assert proc.returncode != 0 and "bundled model" in proc.stderr
    assert float_model.read_bytes() == before


def test_statistics_are_kept_on_disk_for_later_runs(qplay, tmp_path):
    """A later process calibrating the same model on the same images reads the statistics the
    first one measured: no inference (no progress line), the same model, other options too."""
    args = ("calibrate", "--method", "mse", "--per-class", "7")
    first = qplay(*args, "--out", tmp_path / "a.onnx")
    assert "ranges (images): 70/70" in first.stderr, first.stderr
    second = qplay(*args, "--out", tmp_path / "b.onnx")
    assert "(images)" not in second.stderr, second.stderr
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    third = qplay(*args, "--per-channel", "--out", tmp_path / "c.onnx")
    assert "(images)" not in third.stderr, third.stderr
