"""Keep-in-float from the command line: a model saved by `qplay edit --keep-float` loads and
predicts in Python onnxruntime exactly as in qplay; a tensor that is not quantized, or a
TorchScript model, is a named error that writes nothing."""

import json
from collections import Counter

import numpy as np
import onnx
from conftest import ROOT, assert_predicts_as_python


def op_counts(path):
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_a_model_with_tensors_kept_in_float_runs_in_python_onnxruntime(qplay, tmp_path):
    out = tmp_path / "kept.onnx"
    args = ["--keep-float", "activation_3", "--keep-float", "conv2d_3.weight", "--float", "resnet8_float"]
    diff = json.loads(qplay("edit", "--model", "resnet8_int8", "--out", out, *args).stdout)
    kept = {r["tensor"] for r in diff["rows"] if r["after"] == "kept in float"}
    assert kept == {"activation_3", "conv2d_3.weight"}, diff
    assert len(diff["history"]) == 2
    onnx.checker.check_model(str(out))
    before, after = op_counts(ROOT / "models/resnet8_int8.onnx"), op_counts(out)
    assert after["QuantizeLinear"] == before["QuantizeLinear"] - 1
    assert after["DequantizeLinear"] == before["DequantizeLinear"] - 2
    assert after["Relu"] == before["Relu"] + 1  # the ReLU activation_3's grid folded
    float_weight = {t.name: t for t in onnx.load(str(ROOT / "models/resnet8_float.onnx")).graph.initializer}
    saved = {t.name: t for t in onnx.load(str(out)).graph.initializer}
    np.testing.assert_array_equal(
        onnx.numpy_helper.to_array(saved["conv2d_3.weight"]),
        onnx.numpy_helper.to_array(float_weight["conv2d_3.weight"]),
    )

    assert_predicts_as_python(qplay, out, tmp_path)


def test_keep_float_of_a_tensor_that_is_not_quantized_is_an_error_and_writes_nothing(qplay, tmp_path):
    out = tmp_path / "never.onnx"
    proc = qplay("edit", "--model", "resnet8_int8", "--out", out, "--keep-float", "input", check=False)
    assert proc.returncode != 0
    assert "`input`" in proc.stderr and "is not quantized" in proc.stderr, proc.stderr
    assert "activation_3" in proc.stderr, "the error lists what is allowed"
    assert not out.exists()
    proc = qplay("edit", "--model", "resnet8_int8_torch", "--out", tmp_path / "t.pt", "--keep-float", "conv2d_1",
                 check=False)
    assert proc.returncode != 0 and "TorchScript" in proc.stderr, proc.stderr
