"""Shared fixtures: the project root, the built `qplay` binary, and the reference module."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

# One thread count for both sides of every comparison.
THREADS = os.cpu_count() or 1


LOSSLESS = ROOT / "data/cifar10/test_lossless_subset_249.bin"


def assert_predicts_as_python(qplay, model, tmp_path):
    """`qplay eval`'s predictions for `model` on the 249 lossless images equal those of Python
    onnxruntime (ONNX) or torch.jit (TorchScript) run by `scripts/reference.py`."""
    import numpy as np
    import reference

    preds = tmp_path / "predictions.txt"
    qplay("eval", "--model", model, "--data", "lossless249", "--save-predictions", preds, "--batch-size", 100)
    ours = np.loadtxt(preds, dtype=np.uint8)
    images, _ = reference.load_cifar(LOSSLESS)
    theirs = reference.Runner(model, THREADS).predict(images, 100)
    np.testing.assert_array_equal(ours, theirs)
    return images


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def qplay(tmp_path_factory):
    """Runs the release `qplay` binary (with a fresh cache folder); returns the CompletedProcess."""
    binary = ROOT / "target" / "release" / "qplay"
    assert binary.exists(), "build first: make setup"
    cache = tmp_path_factory.mktemp("qplay-cache")
    env = dict(os.environ, QPLAY_THREADS=str(THREADS), QPLAY_HOME=str(ROOT), QPLAY_CACHE=str(cache))

    def run(*args, check=True):
        proc = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(f"qplay {' '.join(map(str, args))} failed:\n{proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="module")
def kernel():
    """A qplay kernel under jupyter_client, one per test module: (manager, client)."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="qplay", startup_timeout=300)
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def start_endless_cell(kc, timeout=120):
    """Starts a cell that never ends and returns its msg_id once it is really running
    (compiled, and printed its line), so that an interrupt now stops running code."""
    msg_id = kc.execute('println!("spinning"); loop { std::hint::spin_loop(); }')
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            return msg_id
