"""Build qplay's ResNet-8 model files from the MLPerf Tiny Keras source.

Run from the repository root:

    .venv/bin/python models/build.py

Inputs (read only):
  models/source/pretrainedResnet.h5            Keras 2.4 functional model
  models/source/pretrainedResnet.tflite        float reference for the checks
  models/source/pretrainedResnet_quant.tflite  int8 reference (accuracy row only)
  data/cifar10/*.bin                           CIFAR-10 binary records

Outputs (in models/):
  resnet8_float.onnx              faithful float port, BatchNorm folded into Conv
  resnet8_int8.onnx               onnxruntime static QDQ, int8/int8, per-tensor
  resnet8_uint8.onnx              onnxruntime static QDQ, uint8/uint8, per-tensor
  resnet8_int8_perchannel.onnx    onnxruntime static QDQ, int8/int8, per-channel
  resnet8_float_torch.pt          TorchScript (traced) float module
  resnet8_int8_torch.pt           TorchScript (traced) FX-quantized module (fbgemm)

Every model takes NHWC float32 input with raw pixel values 0..255 and returns
softmax probabilities [N, 10].  The Keras graph is walked generically (in
topological order) and lowered to a small list of ops that both the ONNX and
the torch builders consume, so the two ports share the same folded weights.

Quantization calibration uses 1,000 training images (the first 100 records of
each class in train_first4000_lossless.bin, kept in file order); test images
are never used for calibration.

The script prints a report and exits non-zero if any check fails.
"""

import hashlib
import json
import logging
import math
import random
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime import quantization as ortq

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SOURCE = MODELS / "source"
DATA = ROOT / "data" / "cifar10"

KERAS_H5 = SOURCE / "pretrainedResnet.h5"
TFLITE_FLOAT = SOURCE / "pretrainedResnet.tflite"
TFLITE_INT8 = SOURCE / "pretrainedResnet_quant.tflite"
TEST_JPEG = DATA / "test_batch_jpeg75.bin"
TEST_LOSSLESS = DATA / "test_lossless_subset_249.bin"
TRAIN = DATA / "train_first4000_lossless.bin"

OPSET = 17
IR_VERSION = 8  # the IR version that came with opset 17 (onnx 1.12)
INPUT_NAME = "input"
OUTPUT_NAME = "output"
SEED = 0

CALIB_PER_CLASS = 100
CALIB_BATCH = 100
EVAL_BATCH = 500
CHECK_JPEG_COUNT = 1000
MAX_ABS_DIFF = 1e-4
MAX_QUANT_ACC_DROP = 3.0  # percentage points on the 10k JPEG set (sanity bound)

ORT_QUANT_VARIANTS = [
    # (file name, activation type, weight type, per_channel)
    ("resnet8_int8.onnx", ortq.QuantType.QInt8, ortq.QuantType.QInt8, False),
    ("resnet8_uint8.onnx", ortq.QuantType.QUInt8, ortq.QuantType.QUInt8, False),
    ("resnet8_int8_perchannel.onnx", ortq.QuantType.QInt8, ortq.QuantType.QInt8, True),
]


# --------------------------------------------------------------------------
# checks bookkeeping
# --------------------------------------------------------------------------

FAILURES = []


def check(ok, message):
    """Print a PASS/FAIL line and remember failures."""
    print(f"  [{'PASS' if ok else 'FAIL'}] {message}")
    if not ok:
        FAILURES.append(message)
    return ok


def section(title):
    print()
    print(f"== {title}")


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def load_cifar_bin(path):
    """Read CIFAR-10 binary records -> (images NHWC float32 0..255, labels int64)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 3073:
        raise ValueError(f"{path}: size {raw.size} is not a multiple of 3073")
    raw = raw.reshape(-1, 3073)
    labels = raw[:, 0].astype(np.int64)
    images = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images, dtype=np.float32), labels


def calibration_images(images, labels, per_class=CALIB_PER_CLASS):
    """First `per_class` records of each class, in file order."""
    picked = []
    for cls in range(10):
        idx = np.flatnonzero(labels == cls)[:per_class]
        if idx.size != per_class:
            raise ValueError(f"class {cls}: only {idx.size} training records")
        picked.append(idx)
    order = np.sort(np.concatenate(picked))
    return images[order], labels[order]


def batches(array, size):
    for start in range(0, len(array), size):
        yield array[start : start + size]


# --------------------------------------------------------------------------
# Keras model -> lowered op list
# --------------------------------------------------------------------------


@dataclass
class Op:
    """One lowered operation (NCHW semantics)."""

    kind: str  # transpose | conv | relu | add | avgpool | flatten | dense | softmax
    name: str  # node name, derived from the Keras layer name
    inputs: list
    output: str
    attrs: dict = field(default_factory=dict)
    doc: str = ""


def load_keras(path):
    """Return (layers in config order, {(layer, weight): array}, config)."""
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        weights = {}
        group = f["model_weights"]
        for lname in group.attrs["layer_names"]:
            lname = lname.decode()
            for wname in group[lname].attrs["weight_names"]:
                wname = wname.decode()  # e.g. "conv2d_3/kernel:0"
                short = wname.rsplit("/", 1)[-1].split(":")[0]
                weights[(lname, short)] = np.array(group[lname][wname])
    layers = []
    for layer in config["config"]["layers"]:
        nodes = layer["inbound_nodes"]
        if len(nodes) > 1:
            raise NotImplementedError(f"shared layer {layer['name']}")
        inbound = [entry[0] for entry in nodes[0]] if nodes else []
        layers.append(
            {
                "name": layer["name"],
                "class": layer["class_name"],
                "config": layer["config"],
                "inbound": inbound,
            }
        )
    return layers, weights, config


def topological_order(layers):
    """Kahn's algorithm; ties broken by position in the Keras config."""
    position = {layer["name"]: i for i, layer in enumerate(layers)}
    pending = {layer["name"]: set(layer["inbound"]) for layer in layers}
    by_name = {layer["name"]: layer for layer in layers}
    done, order = set(), []
    while pending:
        ready = sorted((n for n, deps in pending.items() if deps <= done), key=position.get)
        if not ready:
            raise ValueError("cycle in the Keras graph")
        name = ready[0]
        order.append(by_name[name])
        done.add(name)
        del pending[name]
    return order


def same_pads(size, kernel, stride):
    """TensorFlow 'SAME' padding for one spatial dim -> (begin, end)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def fold_batchnorm(kernel, bias, bn_weights, bn_config):
    """Fold BatchNorm into an HWIO conv kernel; float64 math, float32 result."""
    k = kernel.astype(np.float64)
    b = bias.astype(np.float64) if bias is not None else np.zeros(k.shape[-1])
    channels = k.shape[-1]
    gamma = bn_weights.get("gamma", np.ones(channels)).astype(np.float64)
    beta = bn_weights.get("beta", np.zeros(channels)).astype(np.float64)
    mean = bn_weights["moving_mean"].astype(np.float64)
    var = bn_weights["moving_variance"].astype(np.float64)
    scale = gamma / np.sqrt(var + float(bn_config["epsilon"]))
    return (k * scale).astype(np.float32), ((b - mean) * scale + beta).astype(np.float32)


def activation_ops(kind, layer_name, tensor, node_name):
    """Ops for a Keras activation applied to `tensor`; returns (ops, out)."""
    if kind == "linear":
        return [], tensor
    if kind == "relu":
        return [Op("relu", node_name, [tensor], node_name)], node_name
    if kind == "softmax":
        return [Op("softmax", node_name, [tensor], node_name, {"axis": 1})], node_name
    raise NotImplementedError(f"{layer_name}: activation {kind}")


def lower_keras(layers, weights):
    """Walk the Keras graph and lower it to a list of NCHW ops.

    Returns (ops, input_shape_hwc, output_tensor).  Tensor names equal the
    Keras layer names; a BatchNormalization folded into its Conv2D reuses the
    conv's tensor, and the final tensor is renamed to OUTPUT_NAME.
    """
    order = topological_order(layers)
    consumers = {layer["name"]: [] for layer in layers}
    for layer in layers:
        for src in layer["inbound"]:
            consumers[src].append(layer)

    ops, tensor_of, shape_of, folded = [], {}, {}, set()
    input_hwc = None
    for layer in order:
        name, cls, cfg = layer["name"], layer["class"], layer["config"]
        if name in folded:
            continue
        ins = [tensor_of[src] for src in layer["inbound"]]
        if cls == "InputLayer":
            _, h, w, c = cfg["batch_input_shape"]
            input_hwc = (h, w, c)
            out = f"{name}_nchw"
            ops.append(Op("transpose", out, [INPUT_NAME], out, {"perm": [0, 3, 1, 2]},
                          "NHWC -> NCHW"))
            tensor_of[name], shape_of[out] = out, (c, h, w)
        elif cls == "Conv2D":
            if cfg.get("data_format", "channels_last") != "channels_last":
                raise NotImplementedError(f"{name}: data_format")
            if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1) or cfg.get("groups", 1) != 1:
                raise NotImplementedError(f"{name}: dilation/groups")
            kernel = weights[(name, "kernel")]
            bias = weights.get((name, "bias"))
            doc = f"Keras Conv2D {name}"
            users = consumers[name]
            if (len(users) == 1 and users[0]["class"] == "BatchNormalization"
                    and cfg["activation"] == "linear"):
                bn = users[0]
                bn_w = {k: v for (lname, k), v in weights.items() if lname == bn["name"]}
                kernel, bias = fold_batchnorm(kernel, bias, bn_w, bn["config"])
                folded.add(bn["name"])
                doc += f" with BatchNormalization {bn['name']} folded in"
            elif bias is None:
                bias = np.zeros(kernel.shape[-1], np.float32)
            c, h, w = shape_of[ins[0]]
            kh, kw = kernel.shape[:2]
            sh, sw = cfg["strides"]
            if cfg["padding"] == "same":
                (pt, pb), (pl, pr) = same_pads(h, kh, sh), same_pads(w, kw, sw)
                oh, ow = math.ceil(h / sh), math.ceil(w / sw)
            elif cfg["padding"] == "valid":
                pt = pb = pl = pr = 0
                oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
            else:
                raise NotImplementedError(f"{name}: padding {cfg['padding']}")
            weight = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32)
            ops.append(Op("conv", name, [ins[0]], name,
                          {"weight": weight, "bias": np.asarray(bias, np.float32),
                           "strides": [sh, sw], "pads": [pt, pl, pb, pr]}, doc))
            shape_of[name] = (weight.shape[0], oh, ow)
            act_ops, out = activation_ops(cfg["activation"], name, name, f"{name}_{cfg['activation']}")
            ops += act_ops
            shape_of[out] = shape_of[name]
            tensor_of[name] = out
            if users and users[0]["name"] in folded:
                tensor_of[users[0]["name"]] = out
        elif cls == "BatchNormalization":
            raise NotImplementedError(f"{name}: BatchNormalization not after a Conv2D")
        elif cls == "Activation":
            act_ops, out = activation_ops(cfg["activation"], name, ins[0], name)
            ops += act_ops
            tensor_of[name], shape_of[out] = out, shape_of[ins[0]]
        elif cls == "Add":
            if len(ins) != 2:
                raise NotImplementedError(f"{name}: Add with {len(ins)} inputs")
            ops.append(Op("add", name, ins, name))
            tensor_of[name], shape_of[name] = name, shape_of[ins[0]]
        elif cls == "AveragePooling2D":
            if cfg["padding"] != "valid":
                raise NotImplementedError(f"{name}: padding {cfg['padding']}")
            c, h, w = shape_of[ins[0]]
            (kh, kw), (sh, sw) = cfg["pool_size"], cfg["strides"]
            ops.append(Op("avgpool", name, ins, name,
                          {"kernel_shape": [kh, kw], "strides": [sh, sw]}))
            tensor_of[name], shape_of[name] = name, (c, (h - kh) // sh + 1, (w - kw) // sw + 1)
        elif cls == "Flatten":
            c, h, w = shape_of[ins[0]]
            src = ins[0]
            if (h, w) != (1, 1):  # Keras flattens in HWC order
                src = f"{name}_nhwc"
                ops.append(Op("transpose", src, ins, src, {"perm": [0, 2, 3, 1]}))
            ops.append(Op("flatten", name, [src], name))
            tensor_of[name], shape_of[name] = name, (c * h * w,)
        elif cls == "Dense":
            kernel = weights[(name, "kernel")]
            bias = weights.get((name, "bias"), np.zeros(kernel.shape[1], np.float32))
            ops.append(Op("dense", name, ins, name,
                          {"weight": kernel.astype(np.float32), "bias": bias.astype(np.float32)},
                          f"Keras Dense {name} (pre-activation)"))
            shape_of[name] = (kernel.shape[1],)
            act_ops, out = activation_ops(cfg["activation"], name, name, f"{name}_{cfg['activation']}")
            ops += act_ops
            tensor_of[name], shape_of[out] = out, shape_of[name]
        else:
            raise NotImplementedError(f"{name}: layer class {cls}")

    final = tensor_of[layers_output_name(layers, order)]
    for op in ops:
        op.inputs = [OUTPUT_NAME if t == final else t for t in op.inputs]
        if op.output == final:
            op.output = OUTPUT_NAME
    return ops, input_hwc, shape_of[final]


def layers_output_name(layers, order):
    """The single layer nobody consumes (the Keras model output)."""
    used = {src for layer in layers for src in layer["inbound"]}
    outs = [layer["name"] for layer in order if layer["name"] not in used]
    if len(outs) != 1:
        raise NotImplementedError(f"expected one output layer, got {outs}")
    return outs[0]


# --------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------


def build_onnx(ops, input_hwc, output_shape, labels_text):
    """Lowered ops -> checked ONNX ModelProto with shape information."""
    nodes, inits = [], []
    for op in ops:
        if op.kind == "transpose":
            node = helper.make_node("Transpose", op.inputs, [op.output], op.name, perm=op.attrs["perm"])
        elif op.kind == "conv":
            w, b = f"{op.name}.weight", f"{op.name}.bias"
            inits += [numpy_helper.from_array(op.attrs["weight"], w),
                      numpy_helper.from_array(op.attrs["bias"], b)]
            node = helper.make_node("Conv", [op.inputs[0], w, b], [op.output], op.name,
                                    kernel_shape=list(op.attrs["weight"].shape[2:]),
                                    strides=op.attrs["strides"], pads=op.attrs["pads"],
                                    dilations=[1, 1], group=1)
        elif op.kind == "relu":
            node = helper.make_node("Relu", op.inputs, [op.output], op.name)
        elif op.kind == "add":
            node = helper.make_node("Add", op.inputs, [op.output], op.name)
        elif op.kind == "avgpool":
            node = helper.make_node("AveragePool", op.inputs, [op.output], op.name,
                                    kernel_shape=op.attrs["kernel_shape"],
                                    strides=op.attrs["strides"], pads=[0, 0, 0, 0])
        elif op.kind == "flatten":
            node = helper.make_node("Flatten", op.inputs, [op.output], op.name, axis=1)
        elif op.kind == "dense":
            w, b = f"{op.name}.weight", f"{op.name}.bias"
            inits += [numpy_helper.from_array(op.attrs["weight"], w),
                      numpy_helper.from_array(op.attrs["bias"], b)]
            node = helper.make_node("Gemm", [op.inputs[0], w, b], [op.output], op.name)
        elif op.kind == "softmax":
            node = helper.make_node("Softmax", op.inputs, [op.output], op.name, axis=op.attrs["axis"])
        else:
            raise NotImplementedError(op.kind)
        if op.doc:
            node.doc_string = op.doc
        nodes.append(node)

    h, w, c = input_hwc
    graph = helper.make_graph(
        nodes, "resnet8",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", h, w, c])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", *output_shape])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="qplay models/build.py",
        doc_string=("MLPerf Tiny ResNet-8 (CIFAR-10), ported from pretrainedResnet.h5 with "
                    "BatchNormalization folded into Conv. Input NHWC float32 raw pixels 0..255; "
                    "output softmax probabilities."),
    )
    helper.set_model_props(model, {"labels": labels_text, "input_layout": "NHWC",
                                   "input_range": "0..255", "output": "softmax probabilities"})
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def ort_session(path):
    opts = ort.SessionOptions()
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_ort(session, images, batch=EVAL_BATCH):
    return np.concatenate([session.run(None, {INPUT_NAME: b})[0] for b in batches(images, batch)])


class CalibrationReader(ortq.CalibrationDataReader):
    """Feeds the calibration images to onnxruntime in fixed-size batches."""

    def __init__(self, images):
        self._batches = [np.ascontiguousarray(b) for b in batches(images, CALIB_BATCH)]
        self._next = 0

    def get_next(self):
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return {INPUT_NAME: self._batches[self._next - 1]}

    def rewind(self):
        self._next = 0


def quantize_ort(float_path, out_path, calib, act_type, weight_type, per_channel, exclude):
    ortq.quantize_static(
        str(float_path), str(out_path), CalibrationReader(calib),
        quant_format=ortq.QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=act_type,
        weight_type=weight_type,
        calibrate_method=ortq.CalibrationMethod.MinMax,
        nodes_to_exclude=exclude,
        calibration_providers=["CPUExecutionProvider"],
    )


def qdq_summary(model):
    """Counts of node types and, per op type, how many nodes sit between DQ and Q."""
    graph = model.graph
    counts = Counter(n.op_type for n in graph.node)
    producer = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    wrapped = {}
    for n in graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        data_in = n.input[:1] if n.op_type in ("Conv", "Gemm") else n.input
        q_in = all(i in producer and producer[i].op_type == "DequantizeLinear" for i in data_in)
        q_out = all(any(c.op_type == "QuantizeLinear" for c in consumers.get(o, []))
                    for o in n.output)
        tag = {(True, True): "DQ->op->Q", (True, False): "DQ->op (float out)",
               (False, True): "op->Q (float in)", (False, False): "float"}[(q_in, q_out)]
        wrapped.setdefault(n.op_type, Counter())[tag] += 1
    return counts, wrapped


# --------------------------------------------------------------------------
# torch
# --------------------------------------------------------------------------


def import_torch():
    import torch
    import torch.ao.quantization.quantize_fx  # noqa: F401  (import order matters in 2.13)
    return torch


def build_torch_module(ops):
    """Lowered ops -> float nn.Module (NHWC 0..255 in, softmax probabilities out)."""
    torch = import_torch()
    nn = torch.nn

    class KerasResNet8(nn.Module):
        """Plan-driven port; FX-traceable because the plan is a static list."""

        def __init__(self):
            super().__init__()
            self.plan = []  # (kind, module attribute or None, input names, output name)
            for op in ops:
                if op.kind == "transpose":
                    self.plan.append(("permute", tuple(op.attrs["perm"]), op.inputs, op.output))
                elif op.kind == "conv":
                    w = torch.from_numpy(op.attrs["weight"].copy())
                    pt, pl, pb, pr = op.attrs["pads"]
                    src = op.inputs[0]
                    if (pt, pl) == (pb, pr):
                        padding = (pt, pl)
                    else:  # TF-style asymmetric SAME padding: explicit zero pad
                        pad_name = f"{op.name}_pad"
                        self.add_module(pad_name, nn.ZeroPad2d((pl, pr, pt, pb)))
                        self.plan.append(("module", pad_name, [src], pad_name))
                        src, padding = pad_name, (0, 0)
                    conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]),
                                     stride=tuple(op.attrs["strides"]), padding=padding)
                    with torch.no_grad():
                        conv.weight.copy_(w)
                        conv.bias.copy_(torch.from_numpy(op.attrs["bias"].copy()))
                    self.add_module(op.name, conv)
                    self.plan.append(("module", op.name, [src], op.output))
                elif op.kind == "dense":
                    w = torch.from_numpy(op.attrs["weight"].T.copy())
                    lin = nn.Linear(w.shape[1], w.shape[0])
                    with torch.no_grad():
                        lin.weight.copy_(w)
                        lin.bias.copy_(torch.from_numpy(op.attrs["bias"].copy()))
                    self.add_module(op.name, lin)
                    self.plan.append(("module", op.name, op.inputs, op.output))
                elif op.kind == "relu":
                    self.add_module(op.name, nn.ReLU())
                    self.plan.append(("module", op.name, op.inputs, op.output))
                elif op.kind == "avgpool":
                    self.add_module(op.name, nn.AvgPool2d(tuple(op.attrs["kernel_shape"]),
                                                          tuple(op.attrs["strides"])))
                    self.plan.append(("module", op.name, op.inputs, op.output))
                elif op.kind == "softmax":
                    self.add_module(op.name, nn.Softmax(dim=op.attrs["axis"]))
                    self.plan.append(("module", op.name, op.inputs, op.output))
                elif op.kind in ("add", "flatten"):
                    self.plan.append((op.kind, None, op.inputs, op.output))
                else:
                    raise NotImplementedError(op.kind)

        def forward(self, x):
            env = {INPUT_NAME: x}
            for kind, arg, inputs, output in self.plan:
                args = [env[name] for name in inputs]
                if kind == "permute":
                    env[output] = args[0].permute(*arg)
                elif kind == "module":
                    env[output] = getattr(self, arg)(args[0])
                elif kind == "add":
                    env[output] = torch.add(args[0], args[1])
                elif kind == "flatten":
                    env[output] = torch.flatten(args[0], 1)
            return env[OUTPUT_NAME]

    return KerasResNet8().eval()


def fbgemm_backend_config():
    """fbgemm backend config plus ZeroPad2d as an op that shares its input's qparams.

    The stock config has no pattern for padding, so FX gives the ZeroPad2d
    output its own observer and re-quantizes after the pad with a slightly
    different scale.  Declaring ZeroPad2d as sharing its input's observer makes
    the pad output use the input's scale/zero point.  convert_fx still runs the
    pad between dequantize and quantize_per_tensor (its native lowering only
    knows a fixed list of ops), but with identical qparams that round trip is
    exact: the int8 values are the input's, plus a border of the zero point.
    """
    torch = import_torch()
    from torch.ao.quantization.backend_config import (BackendPatternConfig, DTypeConfig,
                                                      ObservationType, get_fbgemm_backend_config)

    config = get_fbgemm_backend_config()
    config.set_backend_pattern_config(
        BackendPatternConfig(torch.nn.ZeroPad2d)
        .set_observation_type(ObservationType.OUTPUT_SHARE_OBSERVER_WITH_INPUT)
        .add_dtype_config(DTypeConfig(input_dtype=torch.quint8, output_dtype=torch.quint8))
    )
    return config


def quantize_torch(float_module, calib, softmax_names):
    """FX graph mode post-training static quantization (fbgemm)."""
    torch = import_torch()
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "fbgemm"
    qconfig_mapping = get_default_qconfig_mapping("fbgemm")
    for name in softmax_names:
        qconfig_mapping = qconfig_mapping.set_module_name(name, None)
    backend = fbgemm_backend_config()
    example = (torch.zeros(1, 32, 32, 3),)
    prepared = prepare_fx(float_module, qconfig_mapping, example, backend_config=backend)
    with torch.no_grad():
        for b in batches(calib, CALIB_BATCH):
            prepared(torch.from_numpy(b))
    return convert_fx(prepared, backend_config=backend)


def run_torch(module, images, batch=EVAL_BATCH):
    torch = import_torch()
    with torch.no_grad():
        return np.concatenate([module(torch.from_numpy(b)).numpy() for b in batches(images, batch)])


def trace_and_save(module, path):
    torch = import_torch()
    with torch.no_grad():
        traced = torch.jit.trace(module, (torch.zeros(1, 32, 32, 3),), check_trace=False)
    torch.jit.save(traced, str(path))
    return traced


def torch_structure(module):
    """Module types and graph call targets of a (converted) GraphModule."""
    mods = Counter(m._get_name() for n, m in module.named_modules() if n and "." not in n)
    calls = Counter()
    for node in module.graph.nodes:
        if node.op == "call_function":
            calls[getattr(node.target, "__name__", str(node.target))] += 1
        elif node.op == "call_method":
            calls[f".{node.target}()"] += 1
    return mods, calls


# --------------------------------------------------------------------------
# TFLite reference
# --------------------------------------------------------------------------


def run_tflite(path, images, batch=EVAL_BATCH):
    """Run a TFLite model (float or int8 I/O) and return float outputs."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    results, current = [], None
    for b in batches(images, batch):
        if current != len(b):
            interp.resize_tensor_input(inp["index"], [len(b), *inp["shape"][1:]])
            interp.allocate_tensors()
            current = len(b)
        x = b
        if inp["dtype"] != np.float32:
            scale, zp = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(b / scale + zp), info.min, info.max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zp = out["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        results.append(y.copy())
    return np.concatenate(results)


# --------------------------------------------------------------------------
# report helpers
# --------------------------------------------------------------------------


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def accuracy(probs, labels):
    return 100.0 * float(np.mean(probs.argmax(1) == labels))


def compare(name, got, ref):
    diff = float(np.max(np.abs(got - ref)))
    same = int(np.sum(got.argmax(1) == ref.argmax(1)))
    check(diff <= MAX_ABS_DIFF, f"{name}: max |diff| = {diff:.3g} (limit {MAX_ABS_DIFF:g})")
    check(same == len(ref), f"{name}: argmax identical for {same}/{len(ref)} images")
    return diff, same


def write_license():
    (MODELS / "LICENSE-source.md").write_text(LICENSE_TEXT)


LICENSE_TEXT = """\
# Model provenance and licence

`models/source/` holds the reference image-classification model of MLPerf Tiny,
the "Tiny" inference benchmark suite of MLCommons: a ResNet-8 trained on
CIFAR-10, as a Keras model (`pretrainedResnet.h5`) and its TensorFlow Lite
conversions (`pretrainedResnet.tflite`, float; `pretrainedResnet_quant.tflite`,
int8). MLCommons distributes these files under the Apache License, Version
2.0, and they are redistributed here under that licence.

The other model files in `models/` (`resnet8_*.onnx`, `resnet8_*_torch.pt`) are
generated from `models/source/pretrainedResnet.h5` by `models/build.py`: the
weights are converted (BatchNormalization folded into the convolutions) and, for
the quantized variants, post-training quantized with calibration on 1,000
CIFAR-10 training images. They are derivative works of the MLPerf Tiny model and
are distributed under the same licence, the Apache License, Version 2.0.
"""


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def quiet_library_noise():
    """Silence known, irrelevant library chatter so the report stays readable."""
    logging.getLogger().setLevel(logging.ERROR)  # ORT: "consider pre-processing"
    logging.getLogger("torch.utils.flop_counter").setLevel(logging.ERROR)
    for pattern in (r"torch\.ao\.quantization is deprecated",
                    r"Please use quant_min and quant_max",
                    r"torch\.quantize_per_tensor, torch\.quantize_per_channel"):
        warnings.filterwarnings("ignore", message=pattern)


def main():
    quiet_library_noise()
    random.seed(SEED)
    np.random.seed(SEED)
    torch = import_torch()
    torch.manual_seed(SEED)
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, torch {torch.__version__}, "
          f"numpy {np.__version__}")

    labels_text = ",".join((DATA / "batches.meta.txt").read_text().split())
    jpeg_x, jpeg_y = load_cifar_bin(TEST_JPEG)
    loss_x, loss_y = load_cifar_bin(TEST_LOSSLESS)
    train_x, train_y = load_cifar_bin(TRAIN)
    calib_x, calib_y = calibration_images(train_x, train_y)
    check_x = np.concatenate([loss_x, jpeg_x[:CHECK_JPEG_COUNT]])
    print(f"data: {len(jpeg_x)} JPEG test, {len(loss_x)} lossless test, "
          f"{len(calib_x)} calibration ({np.bincount(calib_y).tolist()} per class)")

    section("1. float ONNX port")
    layers, weights, _ = load_keras(KERAS_H5)
    ops, input_hwc, out_shape = lower_keras(layers, weights)
    float_onnx = MODELS / "resnet8_float.onnx"
    onnx.save(build_onnx(ops, input_hwc, out_shape, labels_text), str(float_onnx))
    check(True, f"onnx.checker (full_check) passed; {len(ops)} nodes written to {float_onnx.name}")
    for op in ops:
        if op.kind == "conv" and op.attrs["pads"][:2] != op.attrs["pads"][2:]:
            print(f"  asymmetric SAME pads {op.name}: [top,left,bottom,right] = {op.attrs['pads']}")
    onnx_float_out = run_ort(ort_session(float_onnx), check_x)
    tflite_out = run_tflite(TFLITE_FLOAT, check_x)
    compare(f"ONNX vs TFLite float ({len(loss_x)} lossless + {CHECK_JPEG_COUNT} JPEG)",
            onnx_float_out, tflite_out)

    section("2. onnxruntime static QDQ quantization")
    softmax_nodes = [op.name for op in ops if op.kind == "softmax"]
    print(f"  quant_pre_process: not run (BN already folded, shapes fully inferable); "
          f"excluded from quantization: {softmax_nodes}")
    onnx_paths = {"resnet8_float.onnx": float_onnx}
    for fname, act, wt, per_channel in ORT_QUANT_VARIANTS:
        path = MODELS / fname
        quantize_ort(float_onnx, path, calib_x, act, wt, per_channel, softmax_nodes)
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        out = run_ort(ort_session(path), check_x[:7])
        check(out.shape == (7, 10) and np.allclose(out.sum(1), 1, atol=1e-5),
              f"{fname}: checker ok, runs in onnxruntime {ort.__version__} CPU")
        counts, wrapped = qdq_summary(model)
        print(f"    nodes {sum(counts.values())}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        print("    " + "; ".join(f"{k}: " + ", ".join(f"{t} x{c}" for t, c in v.items())
                                 for k, v in sorted(wrapped.items())))
        onnx_paths[fname] = path

    section("3. torch port and FX quantization")
    float_module = build_torch_module(ops)
    float_pt = MODELS / "resnet8_float_torch.pt"
    trace_and_save(float_module, float_pt)
    float_loaded = torch.jit.load(str(float_pt))
    compare("torch float (.pt) vs ONNX float", run_torch(float_loaded, check_x), onnx_float_out)
    print("  note: torch.ao.quantization (FX) is deprecated upstream; its warnings are silenced")
    int8_module = quantize_torch(float_module, calib_x, softmax_nodes)
    mods, calls = torch_structure(int8_module)
    print("  quantized modules: " + ", ".join(f"{k} x{v}" for k, v in sorted(mods.items())))
    print("  graph calls: " + ", ".join(f"{k} x{v}" for k, v in sorted(calls.items())))
    int8_pt = MODELS / "resnet8_int8_torch.pt"
    trace_and_save(int8_module, int8_pt)
    int8_loaded = torch.jit.load(str(int8_pt))
    for module, label in ((float_loaded, "float"), (int8_loaded, "int8")):
        for n in (250, 1):
            ref = run_torch(float_module if label == "float" else int8_module, check_x[:n])
            got = run_torch(module, check_x[:n])
            check(got.shape == (n, 10) and float(np.max(np.abs(got - ref))) <= 1e-6,
                  f"torch.jit.load {label} .pt runs with batch {n} and matches the eager module")

    section("4. accuracy (top-1 %)")
    rows = []
    float_jpeg = None
    for fname, path in onnx_paths.items():
        session = ort_session(path)
        pj, pl = run_ort(session, jpeg_x), run_ort(session, loss_x)
        float_jpeg = pj if float_jpeg is None else float_jpeg
        rows.append((fname, path.stat().st_size, pj, pl))
    for path, module in ((float_pt, float_loaded), (int8_pt, int8_loaded)):
        rows.append((path.name, path.stat().st_size, run_torch(module, jpeg_x), run_torch(module, loss_x)))
    for path in (TFLITE_FLOAT, TFLITE_INT8):
        rows.append((f"source/{path.name}", path.stat().st_size,
                     run_tflite(path, jpeg_x), run_tflite(path, loss_x)))
    float_acc = accuracy(rows[0][2], jpeg_y)
    print(f"  {'model':40s} {'bytes':>9s} {'JPEG 10k':>9s} {'lossless 249':>13s} {'agree w/ float':>15s}")
    for name, size, pj, pl in rows:
        agree = 100.0 * float(np.mean(pj.argmax(1) == float_jpeg.argmax(1)))
        print(f"  {name:40s} {size:9d} {accuracy(pj, jpeg_y):8.2f}% {accuracy(pl, loss_y):12.2f}% "
              f"{agree:14.2f}%")
    for name, _, pj, _ in rows[1:]:
        if "int8" in name and not name.startswith("source/"):
            acc = accuracy(pj, jpeg_y)
            check(acc >= float_acc - MAX_QUANT_ACC_DROP,
                  f"{name}: JPEG accuracy {acc:.2f}% within {MAX_QUANT_ACC_DROP} pts of float")

    write_license()
    section("5. files")
    for path in [*onnx_paths.values(), float_pt, int8_pt, MODELS / "LICENSE-source.md"]:
        print(f"  {sha256(path)}  {path.stat().st_size:9d}  {path.relative_to(ROOT)}")

    print()
    if FAILURES:
        print(f"FAILED: {len(FAILURES)} check(s)")
        for msg in FAILURES:
            print(f"  - {msg}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
