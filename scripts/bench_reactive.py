"""Reactive latency and memory (`qplay bench reactive`), each row beside its reference measured
in the same run.

A client plays the browser: it runs cells as JupyterLab does (execute requests with `cellId`,
in order), then sends widget `comm_msg` updates and times each one from the moment it is sent:
- small cell: a slider and a dependent cell (`let y = s.value() * 2.0; y`), until its output
  area shows the new value — qplay's wrapped rerun, against qplay with wrapping off
  (`QPLAY_WRAP=0`, every rerun compiled, as before wrapping existed) and ipykernel's `observe`
  callback setting an Output widget;
- live view: a slider watched by `live(...)` against the same `observe` callback;
- playground: notebooks/playground.ipynb, all code cells run in order, then the "scale × k"
  slider moved over 50 values of its grid, round and round: the first output of the edit cell
  (its first line), the new quick evaluation shown, and every dependent cell redrawn (the kernel
  idle again), over all moves and over the moves to a value not seen before (whose quick
  evaluation is not in the in-memory cache); wrapped against wrapping off;
- memory: resident set of the kernel and its children (qplay's evcxr runtime) across many
  playground moves and live-view updates.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

from bench_startup import tree  # pid and its descendants
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import start_new_kernel

VIEW = "application/vnd.jupyter.widget-view+json"
ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT = 900


def rss_kib(pid):
    """Resident memory of pid and all its descendants, KiB."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            pass
    return total


def kernel(name, wrap=True):
    env = dict(os.environ)
    if not wrap:
        env["QPLAY_WRAP"] = "0"
    return start_new_kernel(kernel_name=name, startup_timeout=600, env=env)


def run(kc, code, cell_id=None):
    """Runs a cell as JupyterLab does; returns its IOPub messages."""
    metadata = {"cellId": cell_id} if cell_id else {}
    msg = kc.session.msg("execute_request", {
        "code": code, "silent": False, "store_history": True, "user_expressions": {},
        "allow_stdin": False, "stop_on_error": True}, metadata=metadata)
    kc.shell_channel.send(msg)
    msg_id = msg["header"]["msg_id"]
    out = []
    while True:
        m = kc.get_iopub_msg(timeout=TIMEOUT)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        out.append(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell failed: {code!r}: {reply['content']}")
    return out


def model_ids(out, model, description=None):
    return [m["content"]["comm_id"] for m in out if m["msg_type"] == "comm_open"
            and m["content"]["data"]["state"]["_model_name"] == model
            and description in (None, m["content"]["data"]["state"].get("description"))]


def views(out):
    return [m["content"]["data"][VIEW]["model_id"] for m in out
            if m["msg_type"] in ("display_data", "execute_result") and VIEW in m["content"]["data"]]


def send_update(kc, widget, value):
    msg = kc.session.msg("comm_msg", {"comm_id": widget, "data": {
        "method": "update", "state": {"value": value}, "buffer_paths": []}},
        metadata={"version": "2.1.0"})
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"], time.perf_counter()


def area_outputs(m, area):
    if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == area:
        return m["content"]["data"].get("state", {}).get("outputs")
    return None


def timed_update(kc, widget, value, area, expect):
    """Seconds from sending the update to the output area showing `expect`; waits for idle."""
    msg_id, start = send_update(kc, widget, value)
    seen = None
    while True:
        m = kc.get_iopub_msg(timeout=TIMEOUT)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        outputs = area_outputs(m, area)
        if seen is None and outputs is not None and expect in json.dumps(outputs):
            seen = time.perf_counter() - start
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    if seen is None:
        raise RuntimeError(f"no output showing {expect!r} after update to {value}")
    return seen


def stats(xs):
    xs = sorted(xs)
    return {"p50": statistics.median(xs), "p95": xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))],
            "n": len(xs)}


def small_cell(wrap, reruns, name="qplay"):
    """A slider and `let y = s.value() * 2.0; y`: seconds per rerun."""
    km, kc = kernel(name, wrap)
    try:
        (s,) = model_ids(run(kc, 'let s = slider("s", 0, 100000, 0);\ns', "s"), "FloatSliderModel")
        (area,) = views(run(kc, "let y = s.value() * 2.0;\ny", "y"))
        timed_update(kc, s, 1, area, "2.0")  # wraps the cell (wrapped kernel), warms up
        return [timed_update(kc, s, i, area, f"{2 * i}.0") for i in range(2, reruns + 2)]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def qplay_live(lives, memory_updates):
    km, kc = kernel("qplay")
    try:
        out = run(kc, 'let t = int_slider("t", 0, 100000, 0);\nlet t2 = t.clone();\n'
                      'display(&t);\nlive(&[&t], move || format!("t = {}", t2.value()))', "t")
        (t,) = model_ids(out, "IntSliderModel")
        area = views(out)[1]
        pid = km.provisioner.process.pid
        live = [timed_update(kc, t, i, area, f"t = {i}") for i in range(1, lives + 1)]
        before = rss_kib(pid)
        for i in range(memory_updates):
            timed_update(kc, t, lives + 1 + i, area, f"t = {lives + 1 + i}")
        after = rss_kib(pid)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return {"live_s": live, "live_rss_growth_mib": (after - before) / 1024}


def ipykernel(reruns, lives, memory_updates):
    """The same slider and dependent value with ipywidgets: an `observe` callback."""
    km, kc = kernel("python3")
    try:
        out = run(kc, "import ipywidgets as w\nfrom IPython.display import display\n"
                      "t = w.IntSlider(max=100000)\no = w.Output()\n"
                      "def f(change):\n"
                      "    o.outputs = ({'output_type': 'display_data', 'metadata': {},\n"
                      "                  'data': {'text/plain': f\"y = {change['new'] * 2.0}\"}},)\n"
                      "t.observe(f, 'value')\ndisplay(t, o)")
        (t,) = model_ids(out, "IntSliderModel")
        (o,) = model_ids(out, "OutputModel")
        pid = km.provisioner.process.pid
        timed_update(kc, t, 1, o, "y = 2.0")
        observe = [timed_update(kc, t, i, o, f"y = {2 * i}.0") for i in range(2, reruns + lives + 2)]
        before = rss_kib(pid)
        for i in range(memory_updates):
            v = reruns + lives + 2 + i
            timed_update(kc, t, v, o, f"y = {2 * v}.0")
        after = rss_kib(pid)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return {"observe_s": observe, "live_rss_growth_mib": (after - before) / 1024}


def playground_move(kc, slider, value, area, previous):
    """Moves the scale slider; returns (first output s, quick evaluation shown s, all done s,
    the edit cell's final outputs)."""
    msg_id, start = send_update(kc, slider, value)
    first = quick = None
    last = previous
    while True:
        m = kc.get_iopub_msg(timeout=TIMEOUT)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        now = time.perf_counter() - start
        outputs = area_outputs(m, area)
        if outputs is not None:
            last = outputs
            if first is None:
                first = now
            if quick is None and len(outputs) > 1 and outputs[1] != previous[1] \
                    and "qplay-eval" in json.dumps(outputs[1]):
                quick = now
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            done = time.perf_counter() - start
            break
    if first is None:
        raise RuntimeError(f"the edit cell did not rerun for scale × {value}")
    return first, quick if quick is not None else done, done, last


def playground(wrap, moves, warmup=3, notebook=ROOT / "notebooks" / "playground.ipynb",
               name="qplay"):
    """Runs the playground notebook (or another version of it) in kernel `name` and moves its
    "scale × k" slider `moves` times."""
    nb = json.loads(pathlib.Path(notebook).read_text())
    km, kc = kernel(name, wrap)
    try:
        outs = {}
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                outs[cell["id"]] = run(kc, "".join(cell["source"]), cell["id"])
        all_out = [m for out in outs.values() for m in out]
        (slider,) = model_ids(all_out, "FloatSliderModel", "scale × k")
        edit = next(c["id"] for c in nb["cells"] if "with_scale" in "".join(c["source"]))
        (area,) = views(outs[edit])
        previous = next(area_outputs(m, area) for m in reversed(outs[edit])
                        if area_outputs(m, area) is not None)
        pid = km.provisioner.process.pid
        # Values on the slider's 0.05 grid, never the same twice in a row.
        values = [round(0.5 + 0.05 * (i % 50), 2) for i in range(1, moves + warmup + 1)]
        rows, fresh, seen = [], [], set()
        rss_start = None
        for i, v in enumerate(values):
            first, quick, done, previous = playground_move(kc, slider, v, area, previous)
            if i == warmup - 1:
                rss_start = rss_kib(pid)
            if i >= warmup:
                rows.append((first, quick, done))
                if v not in seen:
                    fresh.append((quick, done))
            seen.add(v)
        rss_end = rss_kib(pid)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return {"first_s": [r[0] for r in rows], "quick_s": [r[1] for r in rows],
            "done_s": [r[2] for r in rows], "fresh_quick_s": [r[0] for r in fresh],
            "fresh_done_s": [r[1] for r in fresh], "rss_growth_mib": (rss_end - rss_start) / 1024,
            "rss_mib": rss_end / 1024, "moves": len(rows)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reruns", type=int, default=200, help="timed wrapped reruns of the small cell")
    p.add_argument("--compiled-reruns", type=int, default=10, help="the same, wrapping off")
    p.add_argument("--lives", type=int, default=100)
    p.add_argument("--memory-updates", type=int, default=500)
    p.add_argument("--playground-moves", type=int, default=1000)
    p.add_argument("--compiled-moves", type=int, default=10)
    p.add_argument("--reference-notebook", type=pathlib.Path,
                   help="another version of the playground, moved as many times (wrapped) in the "
                        "same run, e.g. the one before a change; its figures go to stderr")
    p.add_argument("--reference-kernel",
                   help="another kernel spec (e.g. a build of the commit before a change): the "
                        "small cell's wrapped reruns and the playground's wrapped moves again, "
                        "with it, in the same run (the playground of the checkout it runs from)")
    a = p.parse_args()
    summary = {
        "small": {"wrapped": stats(small_cell(True, a.reruns)),
                  "compiled": stats(small_cell(False, a.compiled_reruns))},
    }
    live = qplay_live(a.lives, a.memory_updates)
    ipy = ipykernel(a.reruns, a.lives, a.memory_updates)
    summary["small"]["ipykernel"] = stats(ipy["observe_s"][:a.reruns])
    summary["live"] = {"qplay": stats(live["live_s"]), "ipykernel": stats(ipy["observe_s"][a.reruns:]),
                       "qplay_rss_growth_mib": live["live_rss_growth_mib"],
                       "ipykernel_rss_growth_mib": ipy["live_rss_growth_mib"],
                       "updates": a.memory_updates}
    summary["playground"] = {}
    for name, wrap, moves in [("wrapped", True, a.playground_moves),
                              ("compiled", False, a.compiled_moves)]:
        r = playground(wrap, moves)
        summary["playground"][name] = {
            k: stats(r[k]) for k in ("first_s", "quick_s", "done_s", "fresh_quick_s", "fresh_done_s")}
        summary["playground"][name].update(
            {k: r[k] for k in ("rss_growth_mib", "rss_mib", "moves")})
        print(name, json.dumps(summary["playground"][name]), file=sys.stderr, flush=True)
    if a.reference_notebook:
        r = playground(True, a.playground_moves, notebook=a.reference_notebook)
        summary["playground"]["reference"] = {
            k: stats(r[k]) for k in ("first_s", "quick_s", "done_s", "fresh_quick_s", "fresh_done_s")}
        summary["playground"]["reference"]["notebook"] = str(a.reference_notebook)
        print("reference (wrapped)", json.dumps(summary["playground"]["reference"]), file=sys.stderr,
              flush=True)
    if a.reference_kernel:
        # A build of another commit runs that commit's playground (its cells call its prelude).
        home = KernelSpecManager().get_kernel_spec(a.reference_kernel).env.get("QPLAY_HOME")
        notebook = pathlib.Path(home) / "notebooks" / "playground.ipynb" if home else None
        r = playground(True, a.playground_moves, name=a.reference_kernel,
                       notebook=notebook or ROOT / "notebooks" / "playground.ipynb")
        summary["reference_kernel"] = {
            "name": a.reference_kernel,
            "small": stats(small_cell(True, a.reruns, name=a.reference_kernel)),
            "playground": {k: stats(r[k]) for k in ("first_s", "quick_s", "done_s",
                                                    "fresh_quick_s", "fresh_done_s")}}
        print("reference kernel", json.dumps(summary["reference_kernel"]), file=sys.stderr,
              flush=True)
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
