"""The quantization workbench against Python: `qplay inspect` reads what onnx reads, models saved
by `qplay edit` predict in Python onnxruntime / torch exactly as in qplay, and `qplay sqnr`
agrees with onnxruntime's own `qdq_loss_debug` to 0.01 dB."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from conftest import ROOT, THREADS, assert_predicts_as_python

import reference

QDQ_MODELS = ["resnet8_int8", "resnet8_uint8", "resnet8_int8_perchannel"]
TEST = ROOT / "data/cifar10/test_batch_jpeg75.bin"


def initializers(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


@pytest.mark.parametrize("model", QDQ_MODELS)
def test_inspect_reports_every_qdq_parameter_as_onnx_reads_it(qplay, model):
    rows = json.loads(qplay("inspect", "--model", model, "--json").stdout)
    graph = onnx.load(str(ROOT / "models" / f"{model}.onnx")).graph
    inits = initializers(ROOT / "models" / f"{model}.onnx")
    q = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    assert (len(q), len(dq)) == (16, 36)
    assert len(rows) == 36
    assert sorted(r["role"] for r in rows).count("activation") == 16
    named = {n for r in rows for n in ([r["quantize_node"]] if r["quantize_node"] else []) + r["dequantize_nodes"]}
    assert named == {n.name for n in q + dq}
    for r in rows:
        np.testing.assert_array_equal(np.atleast_1d(inits[r["scale_initializer"]]), np.array(r["scales"], np.float32))
        np.testing.assert_array_equal(np.atleast_1d(inits[r["zero_point_initializer"]]), r["zero_points"])


EDITS = [
    # (model, qplay edit arguments)
    ("resnet8_int8", ["--scale", "activation_2=0.05", "--bits", "conv2d_1.weight=3"]),
    ("resnet8_uint8", ["--zero-point", "activation_3=40", "--bits", "conv2d_4.weight=4"]),
    ("resnet8_int8_perchannel", ["--bits", "conv2d_2.weight=2", "--scale", "activation_5=0.2"]),
    ("resnet8_int8_torch", ["--bits", "conv2d_1.weight=3", "--scale", "add_relu=0.2", "--zero-point", "conv2d_2=250"]),
]


@pytest.mark.parametrize("model,edits", EDITS, ids=[e[0] for e in EDITS])
def test_an_edited_model_predicts_the_same_in_python(qplay, tmp_path, model, edits):
    """ONNX: Python onnxruntime; TorchScript: torch.jit.load (fbgemm)."""
    source = next((ROOT / "models").glob(f"{model}.*"))
    out = tmp_path / f"edited{source.suffix}"
    diff = json.loads(qplay("edit", "--model", model, "--out", out, *edits).stdout)
    assert len(diff["rows"]) >= 2, "the edits changed nothing"
    if source.suffix == ".onnx":
        onnx.checker.check_model(str(out))

    images = assert_predicts_as_python(qplay, out, tmp_path)

    # The edit really changed inference: scores differ from the original model's.
    x = reference.to_nhwc(images[:50])
    before = reference.Runner(source, THREADS).run(x)
    after = reference.Runner(out, THREADS).run(x)
    assert np.abs(before - after).max() > 1e-3


@pytest.mark.parametrize("quant", QDQ_MODELS)
def test_sqnr_matches_onnxruntime_qdq_loss_debug(qplay, tmp_path, quant):
    from onnxruntime.quantization import qdq_loss_debug as dbg

    limit = 100
    ours = json.loads(
        qplay("sqnr", "--float", "resnet8_float", "--quant", quant, "--limit", limit, "--json").stdout
    )

    images, _ = reference.load_cifar(TEST)
    x = reference.to_nhwc(images[:limit])

    class Reader:
        def __init__(self):
            self.batches = iter([{"input": x[i : i + 50]} for i in range(0, limit, 50)])

        def get_next(self):
            return next(self.batches, None)

        def __iter__(self):
            return iter(self.get_next, None)

    def activations(name):
        augmented = tmp_path / f"{name}_augmented.onnx"
        dbg.modify_model_output_intermediate_tensors(str(ROOT / "models" / f"{name}.onnx"), str(augmented))
        return dbg.collect_activations(str(augmented), Reader())

    matched = dbg.create_activation_matching(activations(quant), activations("resnet8_float"))
    theirs = dbg.compute_activation_error(matched)

    assert {r["tensor"] for r in ours} == set(theirs)
    for r in ours:
        t = theirs[r["tensor"]]
        assert r["qdq_err"] == pytest.approx(t["qdq_err"], abs=0.01), r["tensor"]
        assert r["xmodel_err"] == pytest.approx(t["xmodel_err"], abs=0.01), r["tensor"]
