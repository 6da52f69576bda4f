"""onnxruntime's static QDQ quantization, as the reference for qplay's calibration lab.

`qplay bench calibrate` runs it to time `quantize_static` with the same options as the Rust
calibration, and the tests compare its models with qplay's. Calibration images: the first
PER_CLASS records of each class of a CIFAR-10 .bin file, in file order (as models/build.py).

    python scripts/calibrate_reference.py --float models/resnet8_float.onnx --out ref.onnx \
        --method percentile:99.99 --per-channel
Prints JSON: {"seconds": <quantize_static wall time>, "onnxruntime": <version>}.
"""

import argparse
import contextlib
import json
import sys
import time

import numpy as np
import onnx
import onnxruntime
from onnxruntime import quantization as ortq

RECORD = 3073
BATCH = 100


def calibration_images(path, per_class):
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, RECORD)
    labels = raw[:, 0]
    picked = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)]))
    images = raw[picked, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images, dtype=np.float32)


class Reader(ortq.CalibrationDataReader):
    def __init__(self, images, input_name):
        self.batches = [images[i : i + BATCH] for i in range(0, len(images), BATCH)]
        self.input_name = input_name
        self.next = 0

    def get_next(self):
        if self.next >= len(self.batches):
            return None
        self.next += 1
        return {self.input_name: self.batches[self.next - 1]}

    def rewind(self):
        self.next = 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--float", dest="float_model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--data", default="data/cifar10/train_first4000_lossless.bin")
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--method", default="minmax", help="minmax | percentile:P | entropy")
    p.add_argument("--per-channel", action="store_true")
    p.add_argument("--symmetric", action="store_true", help="symmetric activations")
    p.add_argument("--activation-type", default="int8", choices=["int8", "uint8"])
    p.add_argument("--weight-type", default="int8", choices=["int8", "uint8"])
    args = p.parse_args()

    qtype = {"int8": ortq.QuantType.QInt8, "uint8": ortq.QuantType.QUInt8}
    method, _, arg = args.method.partition(":")
    extra = {"ActivationSymmetric": args.symmetric}
    if method == "minmax":
        calib = ortq.CalibrationMethod.MinMax
    elif method == "percentile":
        calib = ortq.CalibrationMethod.Percentile
        extra["CalibPercentile"] = float(arg) if arg else 99.999
    elif method == "entropy":
        calib = ortq.CalibrationMethod.Entropy
    else:
        sys.exit(f"method {args.method!r} has no onnxruntime counterpart (minmax, percentile:P, entropy)")

    model = onnx.load(args.float_model)
    softmax = [n.name for n in model.graph.node if n.op_type == "Softmax"]
    images = calibration_images(args.data, args.per_class)
    reader = Reader(images, model.graph.input[0].name)
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # its progress lines; stdout is for the JSON
        quantize(args, reader, calib, qtype, softmax, extra)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "onnxruntime": onnxruntime.__version__}))


def quantize(args, reader, calib, qtype, softmax, extra):
    ortq.quantize_static(
        args.float_model,
        args.out,
        reader,
        quant_format=ortq.QuantFormat.QDQ,
        per_channel=args.per_channel,
        activation_type=qtype[args.activation_type],
        weight_type=qtype[args.weight_type],
        calibrate_method=calib,
        nodes_to_exclude=softmax,
        calibration_providers=["CPUExecutionProvider"],
        extra_options=extra,
    )


if __name__ == "__main__":
    main()
