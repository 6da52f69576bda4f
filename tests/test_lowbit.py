"""Real low-bit and wide types from the command line: `qplay calibrate --weight-type int4` writes
an opset-21 model whose weights are 4-bit initializers packed two per byte (half the bytes of
int8), and Python onnxruntime predicts with it exactly as qplay does, image for image; so does an
int16-activation model. Bad types and widths, and type pairs onnxruntime's CPU provider cannot
run, are named errors that write nothing."""

import json
import warnings

import numpy as np
import onnx
from conftest import assert_predicts_as_python


def calibrate(qplay, out, *flags):
    qplay("calibrate", "--per-channel", "--per-class", 10, "--out", out, *flags)
    return onnx.load(str(out))


def weight_initializers(model):
    """The quantized weights (not biases, whose integers are int32), by name."""
    return {t.name: t for t in model.graph.initializer
            if t.name.endswith(".weight_quantized")}


def test_int4_weights_are_packed_and_predict_as_in_python_onnxruntime(qplay, tmp_path):
    w4 = calibrate(qplay, tmp_path / "w4.onnx", "--weight-type", "int4")
    w8 = calibrate(qplay, tmp_path / "w8.onnx", "--weight-type", "int8")
    onnx.checker.check_model(w4)
    opset = {o.domain: o.version for o in w4.opset_import}[""]
    assert opset >= 21 and w4.ir_version >= 10, (opset, w4.ir_version)
    q4, q8 = weight_initializers(w4), weight_initializers(w8)
    assert len(q4) == 10 and q4.keys() == q8.keys()
    for name, t in q4.items():
        assert t.data_type == onnx.TensorProto.INT4, name
        count = int(np.prod(t.dims))
        assert len(t.raw_data) == (count + 1) // 2 == (len(q8[name].raw_data) + 1) // 2, name
        values = onnx.numpy_helper.to_array(t)
        assert values.min() >= -7 and values.max() <= 7 and values.min() < 0, name
    assert_predicts_as_python(qplay, tmp_path / "w4.onnx", tmp_path)


def test_int16_activations_predict_as_in_python_onnxruntime(qplay, tmp_path):
    m = calibrate(qplay, tmp_path / "a16.onnx", "--activation-type", "int16", "--weight-type", "uint4")
    zero_points = [t for t in m.graph.initializer if t.name.endswith("_zero_point") and ".weight" not in t.name and ".bias" not in t.name]
    assert zero_points and all(t.data_type == onnx.TensorProto.INT16 for t in zero_points)
    assert all(t.data_type == onnx.TensorProto.UINT4 for t in weight_initializers(m).values())
    assert_predicts_as_python(qplay, tmp_path / "a16.onnx", tmp_path)


def test_bad_types_widths_and_unsupported_pairs_are_named_and_write_nothing(qplay, tmp_path):
    out = tmp_path / "never.onnx"
    cases = [
        (["--weight-type", "int5"], "--weight-type = `int5` is not a type: one of int4, uint4, int8, uint8, int16, uint16"),
        (["--activation-type", "int32"], "--activation-type = int32 is not allowed"),
        (["--weight-type", "int4", "--weight-bits", "8"], "weight_bits = 8 is out of range: 2 to 4 bits fit int4"),
        (["--activation-type", "int16", "--activation-bits", "17"], "2 to 16 bits fit int16"),
        (["--activation-type", "uint4"], "NoCpuKernel: int8 weights with uint4 activations"),
    ]
    for flags, message in cases:
        proc = qplay("calibrate", "--out", out, *flags, check=False)
        assert proc.returncode != 0 and message in proc.stderr, (flags, proc.stderr)
        assert not out.exists()


def test_adaround_at_4_bits_writes_int4_weights_that_python_onnxruntime_runs(qplay, tmp_path):
    out = tmp_path / "ada4.onnx"
    qplay("adaround", "--weight-bits", 4, "--per-channel", "--iterations", 20, "--per-class", 2,
          "--test", "lossless249", "--out", out)
    q = weight_initializers(onnx.load(str(out)))
    assert len(q) == 10 and all(t.data_type == onnx.TensorProto.INT4 for t in q.values())
    assert_predicts_as_python(qplay, out, tmp_path)


def test_edit_stores_chosen_weights_as_int4_and_python_onnxruntime_runs_them(qplay, tmp_path):
    # Two weights of the bundled int8 model re-stored as int4: the model becomes opset 21, those
    # two are packed 4-bit initializers, the other eight stay int8, and Python onnxruntime
    # predicts as qplay does. The bundled model is not touched.
    out = tmp_path / "mixed4.onnx"
    qplay("edit", "--model", "resnet8_int8", "--type", "conv2d_7.weight=int4",
          "--type", "dense.weight=int4", "--out", out)
    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    assert {o.domain: o.version for o in m.opset_import}[""] >= 21 and m.ir_version >= 10
    q = weight_initializers(m)
    four = {n for n, t in q.items() if t.data_type == onnx.TensorProto.INT4}
    assert four == {"conv2d_7.weight_quantized", "dense.weight_quantized"}, four
    assert all(t.data_type == onnx.TensorProto.INT8 for n, t in q.items() if n not in four)
    for name in four:
        values = onnx.numpy_helper.to_array(q[name])
        assert values.min() >= -7 and values.max() <= 7 and values.min() < 0, name
        assert len(q[name].raw_data) == (int(np.prod(q[name].dims)) + 1) // 2, name
    assert_predicts_as_python(qplay, out, tmp_path)
    # A type that is not a storage type, and an activation, are named errors that write nothing.
    for flag, says in [("conv2d_7.weight=int32", "int32"), ("activation_1=int4", "re-quantizes weights")]:
        bad = tmp_path / "bad.onnx"
        proc = qplay("edit", "--model", "resnet8_int8", "--type", flag, "--out", bad, check=False)
        assert proc.returncode != 0 and says in proc.stderr, proc.stderr
        assert not bad.exists()


def test_adaround_of_a_torchscript_model_writes_a_module_that_torch_jit_runs(qplay, tmp_path):
    # --model: the bundled FX int8 TorchScript with its weights re-quantized to 4 bits inside
    # qint8 (per channel, as stored), rounded by AdaRound against resnet8_float; the .pt predicts
    # in torch.jit as qplay does.
    out = tmp_path / "ada4.pt"
    proc = qplay("adaround", "--model", "resnet8_int8_torch", "--weight-bits", 4, "--iterations", 20,
                 "--per-class", 2, "--test", "lossless249", "--out", out, "--json")
    summary = json.loads(proc.stdout)
    assert summary["calibration"] == "resnet8_int8_torch, 4-bit weights (with_bits, per-channel)"
    layers = summary["result"]["layers"]
    assert len(layers) == 10 and all(l["bits"] == 4 for l in layers), layers
    assert_predicts_as_python(qplay, out, tmp_path)
    # The output's format must be the model's; calibration flags do not apply to --model.
    for flags, says in [(["--out", tmp_path / "ada4.onnx"], "is TorchScript, so the rounded model is a .pt file"),
                        (["--out", tmp_path / "again.pt", "--per-channel"], "--per-channel and --equalize are for calibrating --float")]:
        proc = qplay("adaround", "--model", "resnet8_int8_torch", *flags, check=False)
        assert proc.returncode != 0 and says in proc.stderr, proc.stderr
    assert not (tmp_path / "ada4.onnx").exists() and not (tmp_path / "again.pt").exists()


def per_tensor_torchscript(root, out):
    """The bundled FX int8 TorchScript with every packed weight re-quantized per tensor
    (symmetric qint8, scale max|w| / 127) and repacked with its bias and conv settings."""
    import torch

    torch.backends.quantized.engine = "fbgemm"
    m = torch.jit.load(str(root / "models" / "resnet8_int8_torch.pt"))
    ops = torch.ops.quantized

    def per_tensor(w):
        f = w.dequantize()
        return torch.quantize_per_tensor(f, float(f.abs().max()) / 127, 0, torch.qint8)

    for name, c in m.named_children():
        if not hasattr(c, "_packed_params"):
            continue
        p = c._packed_params
        if name == "dense":
            w, b = ops.linear_unpack(p._packed_params)
            p._packed_params = ops.linear_prepack(per_tensor(w), b)
        else:
            w, b = ops.conv2d_unpack(p)
            c._packed_params = ops.conv2d_prepack(per_tensor(w), b, ops.conv2d_stride(p), ops.conv2d_padding(p),
                                                  ops.conv2d_dilation(p), ops.conv2d_groups(p))
    with warnings.catch_warnings():  # torch.jit.save's deprecation in favour of torch.export
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(m, str(out))
    return out


def test_adaround_of_a_per_tensor_torchscript_model_keeps_one_scale_per_weight(qplay, root, tmp_path):
    source = per_tensor_torchscript(root, tmp_path / "int8_per_tensor.pt")
    out = tmp_path / "ada4_per_tensor.pt"
    proc = qplay("adaround", "--model", source, "--weight-bits", 4, "--iterations", 20, "--per-class", 2,
                 "--test", "lossless249", "--out", out, "--json")
    summary = json.loads(proc.stdout)
    assert summary["calibration"].endswith("4-bit weights (with_bits, per-tensor)"), summary["calibration"]
    assert len(summary["result"]["layers"]) == 10
    assert_predicts_as_python(qplay, out, tmp_path)
    import torch

    m = torch.jit.load(str(out))
    for name in ("conv2d", "conv2d_7"):
        w, _ = torch.ops.quantized.conv2d_unpack(getattr(m, name)._packed_params)
        assert w.qscheme() == torch.per_tensor_affine, name
        assert w.int_repr().abs().max() <= 7, name
