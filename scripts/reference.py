"""Reference predictions and timings from Python onnxruntime and torch.

qplay's parity tests import this module to get the predictions that the reference runtimes give
for the same models, images, batch size and thread count; `qplay bench eval` runs it as a script
to time the same full evaluation that qplay times.

    python scripts/reference.py predict --model models/resnet8_int8.onnx --data data/cifar10/test_batch_jpeg75.bin
    python scripts/reference.py bench --model models/resnet8_int8.onnx --repeats 3 --threads 2
"""

import argparse
import json
import sys
import time

import numpy as np

RECORD = 3073


def load_cifar(path):
    """Reads CIFAR-10 binary records: returns (images uint8 [N,3,32,32], labels uint8 [N])."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {RECORD}-byte records")
    raw = raw.reshape(-1, RECORD)
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].copy()


def to_nhwc(images):
    """Planar uint8 [N,3,32,32] -> the models' input: NHWC float32, raw 0..255."""
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1), dtype=np.float32)


class Runner:
    """Runs one model file (.onnx with onnxruntime, .pt with torch) on NHWC float32 batches."""

    def __init__(self, path, threads):
        self.path = str(path)
        if self.path.endswith(".onnx"):
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.framework = "onnxruntime " + ort.__version__
            self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
            self.input = self.session.get_inputs()[0].name
            self.run = lambda x: self.session.run(None, {self.input: x})[0]
        else:
            import torch

            torch.set_num_threads(threads)
            torch.backends.quantized.engine = "fbgemm"
            self.framework = "torch " + torch.__version__
            self.module = torch.jit.load(self.path, map_location="cpu").eval()

            def run(x):
                with torch.inference_mode():
                    return self.module(torch.from_numpy(x)).float().numpy()

            self.run = run

    def predict(self, images, batch_size):
        """Top-1 labels for planar uint8 images, converting each batch as it goes."""
        out = []
        for start in range(0, len(images), batch_size):
            scores = self.run(to_nhwc(images[start : start + batch_size]))
            out.append(np.argmax(scores, axis=1))
        return np.concatenate(out).astype(np.uint8)


def bench(path, data, batch_size, threads, repeats):
    images, labels = load_cifar(data)
    runner = Runner(path, threads)
    runner.run(to_nhwc(images[:batch_size]))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        preds = runner.predict(images, batch_size)
        times.append(time.perf_counter() - start)
    return {
        "model": path,
        "framework": runner.framework,
        "images": int(len(images)),
        "accuracy": float(np.mean(preds == labels)),
        "seconds": sorted(times)[len(times) // 2],
        "all_seconds": times,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["predict", "bench"])
    p.add_argument("--model", required=True)
    p.add_argument("--data", default="data/cifar10/test_batch_jpeg75.bin")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    if a.command == "predict":
        images, _ = load_cifar(a.data)
        for label in Runner(a.model, a.threads).predict(images, a.batch_size):
            print(int(label))
    else:
        json.dump(bench(a.model, a.data, a.batch_size, a.threads, a.repeats), sys.stdout)
        print()


if __name__ == "__main__":
    main()
