"""Kernel latency, qplay vs evcxr_jupyter, on the same cells in the same run (`qplay bench kernel`).

For each kernel: one untimed session warms its build directory; then a timed session measures
kernel start → first result of a trivial cell, then the per-cell latency (request sent → reply
received) of a trivial cell and of a prelude call, each repeated. evcxr_jupyter gets the prelude
the same way a user would give it (`:dep qplay = { path = ... }` and `use qplay::prelude::*;`),
in an untimed set-up cell, and its own persistent EVCXR_TMPDIR.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from jupyter_client import KernelManager

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRIVIAL = "1 + 1"
PRELUDE_CALL = 'load("resnet8_int8").unwrap().name().len()'
# Untimed, after the first result: a first `let`, as every notebook has. evcxr infers a new
# variable's type with rust-analyzer, whose first inference costs seconds and leaves it slower
# on every later cell (about 80 ms here); qplay does that first inference ahead, when idle. With
# no `let` at all, only qplay's rust-analyzer would be in that state.
FIRST_LET = 'let bench_model = load("resnet8_int8").unwrap();'


def kernel_manager(name, spec_dir):
    km = KernelManager(kernel_name=name)
    if spec_dir is not None:
        km.kernel_spec_manager.kernel_dirs.insert(0, str(spec_dir))
    return km


def execute(kc, code, timeout=900):
    start = time.perf_counter()
    msg_id = kc.execute(code)
    while True:
        reply = kc.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    elapsed = time.perf_counter() - start
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell failed: {code!r}: {reply['content'].get('evalue')}")
    return elapsed


def session(name, spec_dir, setup, repeats):
    km = kernel_manager(name, spec_dir)
    start = time.perf_counter()
    km.start_kernel(stdout=subprocess.DEVNULL)  # our stdout carries the JSON result
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=900)
        for code in setup:
            execute(kc, code)
        execute(kc, TRIVIAL)
        first = time.perf_counter() - start
        execute(kc, FIRST_LET)
        trivial = [execute(kc, TRIVIAL) for _ in range(repeats)]
        prelude = [execute(kc, PRELUDE_CALL) for _ in range(repeats)]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return {"first_result_s": first, "trivial_s": statistics.median(trivial), "prelude_call_s": statistics.median(prelude)}


def evcxr_spec(binary, tmp):
    spec = pathlib.Path(tmp) / "kernels" / "evcxr_bench"
    spec.mkdir(parents=True)
    env = {k: os.environ[k] for k in ("LD_LIBRARY_PATH", "LIBTORCH", "ORT_DYLIB_PATH", "QPLAY_HOME", "PATH") if k in os.environ}
    env["EVCXR_TMPDIR"] = str(ROOT / ".bench" / "evcxr-tmp")
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(binary), "--control_file", "{connection_file}"],
        "display_name": "evcxr_jupyter (bench)", "language": "rust", "env": env,
    }))
    return spec.parent


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--evcxr-jupyter", required=True)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    prelude_setup = [f':dep qplay = {{ path = "{ROOT / "prelude"}" }}', "use qplay::prelude::*;"]
    with tempfile.TemporaryDirectory() as tmp:
        spec_dir = evcxr_spec(a.evcxr_jupyter, tmp)
        kernels = [("qplay", None, []), ("evcxr_bench", spec_dir, prelude_setup)]
        for name, spec, setup in kernels:  # warm both build directories, untimed
            session(name, spec, setup, 1)
        results = {}
        for name, spec, setup in kernels:
            results[name] = session(name, spec, setup, a.repeats)
            print(name, results[name], file=sys.stderr)
    json.dump(results, sys.stdout)
    print()


if __name__ == "__main__":
    main()
