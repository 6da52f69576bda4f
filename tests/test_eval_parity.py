"""`qplay eval` gives exactly the predictions of Python onnxruntime / torch on every bundled model."""

import json

import numpy as np
import pytest
from conftest import ROOT, THREADS

import reference

BATCH = 100
MODELS = sorted(p for p in (ROOT / "models").iterdir() if p.suffix in (".onnx", ".pt"))
DATA = {
    "test": ROOT / "data/cifar10/test_batch_jpeg75.bin",
    "lossless249": ROOT / "data/cifar10/test_lossless_subset_249.bin",
}


def test_all_six_models_are_bundled():
    assert {p.stem for p in MODELS} >= {
        "resnet8_float",
        "resnet8_int8",
        "resnet8_uint8",
        "resnet8_int8_perchannel",
        "resnet8_float_torch",
        "resnet8_int8_torch",
    }


@pytest.mark.parametrize("data", sorted(DATA))
@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_predictions_match_the_python_runtime(qplay, tmp_path, model, data):
    out = tmp_path / "predictions.txt"
    proc = qplay("eval", "--model", model.stem, "--data", data, "--json", "--save-predictions", out, "--batch-size", BATCH)
    summary = json.loads(proc.stdout)
    ours = np.loadtxt(out, dtype=np.uint8)

    images, labels = reference.load_cifar(DATA[data])
    theirs = reference.Runner(model, THREADS).predict(images, BATCH)

    assert len(ours) == len(theirs) == summary["total"] == len(labels)
    mismatches = np.flatnonzero(ours != theirs)
    assert mismatches.size == 0, f"{model.stem}: {mismatches.size} predictions differ, first at {mismatches[:10]}"
    assert summary["correct"] == int(np.sum(theirs == labels))
    assert summary["framework"] == ("torch" if model.suffix == ".pt" else "onnx")
