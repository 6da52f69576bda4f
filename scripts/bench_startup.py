"""Opening a notebook (`qplay bench startup`): what a user waits for before the first slider move,
and what the notebook costs in memory, each row beside a reference measured in the same run.

- first result: kernel spawned (jupyter_client) → the result of `1 + 1`; qplay against a plain
  ipykernel running the same cell and, when its binary is given, evcxr_jupyter (with the two
  cells that bring the prelude into scope, which qplay does by itself);
- Run All: `jupyter nbconvert --execute` of notebooks/playground.ipynb, from the command's start
  (kernel spawn included) to its end, with the build root's kept results (as set-up leaves them)
  and with none (`results/` emptied first: every cell compiled, rust-analyzer inferring); the
  reference is the same command on an ipykernel notebook with as many trivial code cells, which
  is what nbconvert and a kernel cost by themselves;
- edited cell: the playground run as JupyterLab runs it (execute requests with `cellId`), then
  late cells edited and run by hand (each edit new code, so it compiles), request → reply; the
  reference is ipykernel's request → reply for `1 + 1`;
- memory: PSS (/proc/PID/smaps_rollup, shared pages split between the processes that map them)
  and RSS of the kernel and all its children, after `1 + 1`, after the playground, with a second
  notebook running the playground beside the first, and after the hand edits (which load
  rust-analyzer); each once the notebook is at rest (see `at_rest`).
Prints one JSON object on stdout.
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench_kernel import evcxr_spec  # the evcxr_jupyter kernelspec, as `qplay bench kernel` makes it
from jupyter_client import KernelManager

ROOT = pathlib.Path(__file__).resolve().parent.parent
PLAYGROUND = ROOT / "notebooks" / "playground.ipynb"
# Where the kernel keeps cells' compiled libraries and inferred types (kernel/src/engine/slots.rs).
RESULTS = pathlib.Path(os.environ.get("QPLAY_BUILD_DIR", ROOT / ".evcxr")) / "results"
TIMEOUT = 900


def tree(pid):
    """pid and all its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return pids


def at_rest(pids):
    """(PSS, RSS) of the processes pids() once the notebook is at rest: after its last cell the
    kernel wraps reactive cells, and the runtime gives freed memory back a second after the last
    cell or wrapped call ended; read every second until PSS moves by less than 1 MiB (at most
    30 s)."""
    last = memory_mib(pids())
    for _ in range(30):
        time.sleep(1)
        now = memory_mib(pids())
        if abs(now[0] - last[0]) < 1:
            return now
        last = now
    return last


def memory_mib(pids):
    """(PSS, RSS) of the processes, MiB."""
    kib = {"Pss": 0, "Rss": 0}
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    key, value = line.split(":", 1)
                    if key in kib:
                        kib[key] += int(value.split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return kib["Pss"] / 1024, kib["Rss"] / 1024


class Kernel:
    def __init__(self, name, spec_dir=None):
        self.km = KernelManager(kernel_name=name)
        if spec_dir is not None:
            self.km.kernel_spec_manager.kernel_dirs.insert(0, str(spec_dir))
        self.started = time.perf_counter()
        self.km.start_kernel(stdout=subprocess.DEVNULL)  # our stdout carries the JSON result
        self.kc = self.km.client()
        self.kc.start_channels()

    def pid(self):
        return self.km.provisioner.process.pid

    def run(self, code, cell_id=None):
        """Runs a cell as JupyterLab does; seconds from request to reply."""
        metadata = {"cellId": cell_id} if cell_id else {}
        msg = self.kc.session.msg("execute_request", {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True}, metadata=metadata)
        start = time.perf_counter()
        self.kc.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        elapsed = time.perf_counter() - start
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"cell failed: {code[:200]!r}: {reply['content'].get('evalue')}")
        return elapsed

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def first_result(name, spec_dir=None, setup=()):
    k = Kernel(name, spec_dir)
    try:
        for code in setup:
            k.run(code)
        k.run("1 + 1")
        return time.perf_counter() - k.started
    finally:
        k.close()


def code_cells(path):
    nb = json.loads(pathlib.Path(path).read_text())
    return [(c.get("id"), "".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "code"]


def run_all(notebook, kernel):
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
             f"--ExecutePreprocessor.kernel_name={kernel}", "--ExecutePreprocessor.timeout=900",
             "--output-dir", tmp, str(notebook)],
            check=True, cwd=pathlib.Path(notebook).parent,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def trivial_notebook(path, cells):
    path.write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {},
                   "outputs": [], "source": "1 + 1"} for i in range(cells)],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))


def playground_session(edits):
    """The playground run as JupyterLab runs it, then `edits` late cells edited by hand; the
    memory after `1 + 1` and after the playground, and a second notebook's share."""
    cells = code_cells(PLAYGROUND)
    k = Kernel("qplay")
    result = {}
    try:
        k.run("1 + 1")
        result["first_result_s"] = time.perf_counter() - k.started
        result["after_start_pss_mib"], result["after_start_rss_mib"] = memory_mib(tree(k.pid()))
        for cell_id, code in cells:
            k.run(code, cell_id)
        result["after_playground_pss_mib"], result["after_playground_rss_mib"] = \
            at_rest(lambda: tree(k.pid()))
        second = Kernel("qplay")
        try:
            for cell_id, code in cells:
                second.run(code, cell_id)
            both = at_rest(lambda: tree(k.pid()) + tree(second.pid()))
            result["two_notebooks_pss_mib"], result["two_notebooks_rss_mib"] = both
        finally:
            second.close()
        # Late cells a user edits by hand: the summary and the diff (milliseconds of work of
        # their own), and the agreement cell (1,000 images through two models), timed apart.
        summary = cells[-1]
        diff = next(c for c in cells if "v.diff()" in c[1])
        agreement = next(c for c in cells if c[1].startswith("agreement("))
        times, work = [], []
        for i in range(edits):
            cell_id, code = (summary, diff)[i % 2]
            times.append(k.run(f"{code}\n// edit {i}", cell_id))
            if i % 2:
                cell_id, code = agreement
                work.append(k.run(f"{code}\n// edit {i}", cell_id))
        result["edited_cell_s"] = times
        result["edited_work_cell_s"] = work
        result["after_edits_pss_mib"], result["after_edits_rss_mib"] = \
            at_rest(lambda: tree(k.pid()))
    finally:
        k.close()
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--edits", type=int, default=6)
    p.add_argument("--evcxr-jupyter", default=None)
    a = p.parse_args()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        first_result("qplay")  # untimed: a build slot made current after set-up
        out["qplay_first_result_s"] = [first_result("qplay") for _ in range(a.repeats)]
        out["ipykernel_first_result_s"] = [first_result("python3") for _ in range(a.repeats)]
        if a.evcxr_jupyter:
            spec = evcxr_spec(a.evcxr_jupyter, tmp)
            setup = [f':dep qplay = {{ path = "{ROOT / "prelude"}" }}', "use qplay::prelude::*;"]
            first_result("evcxr_bench", spec, setup)  # untimed: warms its build directory
            out["evcxr_first_result_s"] = [first_result("evcxr_bench", spec, setup)
                                           for _ in range(a.repeats)]
        print("first results", {k: v for k, v in out.items()}, file=sys.stderr)
        out["qplay_run_all_cold_s"] = []
        for _ in range(a.repeats):
            shutil.rmtree(RESULTS, ignore_errors=True)
            out["qplay_run_all_cold_s"].append(run_all(PLAYGROUND, "qplay"))
        out["qplay_run_all_s"] = [run_all(PLAYGROUND, "qplay") for _ in range(a.repeats)]
        trivial = pathlib.Path(tmp) / "trivial.ipynb"
        trivial_notebook(trivial, len(code_cells(PLAYGROUND)))
        out["ipykernel_run_all_s"] = [run_all(trivial, "python3") for _ in range(a.repeats)]
        print("run all", out["qplay_run_all_s"], out["qplay_run_all_cold_s"],
              out["ipykernel_run_all_s"], file=sys.stderr)
        k = Kernel("python3")
        try:
            out["ipykernel_cell_s"] = [k.run("1 + 1") for _ in range(a.edits)]
        finally:
            k.close()
        out["playground"] = playground_session(a.edits)
        print("playground", out["playground"], file=sys.stderr)
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
