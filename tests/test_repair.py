"""`qplay repair` from the command line: it finds a damaged layer first and writes a model
Python onnxruntime runs, better on the images the ranking did not see; a budget out of range is
a named error."""

import json
from collections import Counter

from conftest import ROOT, THREADS

import reference

TEST = ROOT / "data/cifar10/test_batch_jpeg75.bin"


def test_a_budget_out_of_range_is_a_named_error(qplay):
    proc = qplay("repair", "--model", "resnet8_int8", "--budget", "150", check=False)
    assert proc.returncode != 0 and "0 to 100" in proc.stderr, proc.stderr


def test_repair_finds_the_damaged_layer_and_writes_a_model_python_runs(qplay, tmp_path):
    rows = json.loads(qplay("inspect", "--model", "resnet8_int8", "--json").stdout)
    scale = next(r for r in rows if r["tensor"] == "average_pooling2d")["scales"][0]
    damaged = tmp_path / "damaged.onnx"
    qplay("edit", "--model", "resnet8_int8", "--out", damaged, "--scale", f"average_pooling2d={4 * scale}")
    fixed = tmp_path / "fixed.onnx"
    r = json.loads(
        qplay("repair", "--model", damaged, "--budget", "0.5", "--calib-per-class", "50", "--holdout-per-class",
              "50", "--json", "--out", fixed).stdout
    )
    assert r["ranking"][0]["tensor"] == "average_pooling2d", r["ranking"][:3]
    assert r["kept"][0] == "average_pooling2d"
    assert r["calib_images"] == 500 and r["holdout_images"] == 500
    assert len(r["steps"]) == len(r["kept"]) + 1

    # The held-out images: the next 50 of each class after the 50 the ranking used.
    images, labels = reference.load_cifar(TEST)
    taken, held = Counter(), []
    for i, label in enumerate(labels):
        taken[label] += 1
        if 50 < taken[label] <= 100:
            held.append(i)
    x = images[held]

    def accuracy(path):
        return float((reference.Runner(path, THREADS).predict(x, 100) == labels[held]).mean())

    before, after = accuracy(damaged), accuracy(fixed)
    # As qplay measured them (one image of 500 may differ between the two builds of onnxruntime).
    assert abs(before - r["steps"][0]["holdout_accuracy"]) <= 1 / 500 + 1e-9
    assert abs(after - r["steps"][-1]["holdout_accuracy"]) <= 1 / 500 + 1e-9
    assert after > before, (before, after)


def test_repair_can_widen_a_damaged_weight_to_int16(qplay, tmp_path):
    # A weight cut to 2 bits: with --wider int16 repair stores the float weight as int16 (still a
    # quantized model) instead of keeping it in float, and Python onnxruntime runs the result.
    import onnx
    from conftest import assert_predicts_as_python

    damaged = tmp_path / "damaged.onnx"
    qplay("edit", "--model", "resnet8_int8", "--out", damaged, "--bits", "conv2d.weight=2")
    fixed = tmp_path / "widened.onnx"
    r = json.loads(
        qplay("repair", "--model", damaged, "--budget", "1", "--calib-per-class", "20", "--holdout-per-class",
              "20", "--wider", "int16", "--json", "--out", fixed).stdout
    )
    assert r["ranking"][0]["tensor"] == "conv2d.weight", r["ranking"][:3]
    assert r["steps"][1]["tensor"] == "conv2d.weight" and r["steps"][1]["form"] == "int16", r["steps"][:2]
    assert r["widened"][0] == "conv2d.weight" and "conv2d.weight" not in r["kept"]
    m = onnx.load(str(fixed))
    w = next(t for t in m.graph.initializer if t.name.startswith("conv2d.weight_quantized"))
    assert w.data_type == onnx.TensorProto.INT16, w.data_type
    assert_predicts_as_python(qplay, fixed, tmp_path)
    proc = qplay("repair", "--model", damaged, "--wider", "int4", "--out", tmp_path / "no.onnx", check=False)
    assert proc.returncode != 0 and "not wider than 8 bits" in proc.stderr, proc.stderr
    assert not (tmp_path / "no.onnx").exists()
