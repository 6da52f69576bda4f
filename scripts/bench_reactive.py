"""Reactive latency and memory (`qplay bench reactive`), with ipykernel + ipywidgets as the
reference for the live-view path in the same run.

A client plays the browser's widget manager: it sends `comm_msg` updates and times each one
from the moment it is sent to the moment the output it causes arrives on IOPub:
- compiled rerun: a slider and a small dependent cell (`let y = s.value() * 2.0; y`), which
  the kernel recompiles and reruns into its output area;
- live view: a slider watched by `live(...)`, redrawn in the runtime without compiling; the
  reference is the same thing in Python, an `observe` callback that sets an Output widget;
- memory: resident set of the kernel and its children (qplay's evcxr runtime) before and
  after 500 live-view updates, and across the compiled reruns.
"""

import argparse
import json
import os
import statistics
import sys
import time

from jupyter_client.manager import start_new_kernel

VIEW = "application/vnd.jupyter.widget-view+json"


def rss_kib(pid):
    """Resident memory of pid and all its descendants, KiB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            pass
    return total


def run(kc, code, timeout=600):
    msg_id = kc.execute(code)
    out = []
    while True:
        m = kc.get_iopub_msg(timeout=timeout)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        out.append(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=timeout)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell failed: {code!r}: {reply['content']}")
    return out


def model_ids(out, model):
    return [m["content"]["comm_id"] for m in out if m["msg_type"] == "comm_open"
            and m["content"]["data"]["state"]["_model_name"] == model]


def views(out):
    return [m["content"]["data"][VIEW]["model_id"] for m in out
            if m["msg_type"] in ("display_data", "execute_result") and VIEW in m["content"]["data"]]


def timed_update(kc, widget, value, area, expect, timeout=600):
    """Seconds from sending the update to the output area showing `expect`; waits for idle."""
    msg = kc.session.msg("comm_msg", {"comm_id": widget, "data": {
        "method": "update", "state": {"value": value}, "buffer_paths": []}})
    start = time.perf_counter()
    kc.shell_channel.send(msg)
    seen = None
    while True:
        m = kc.get_iopub_msg(timeout=timeout)
        if m["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
            continue
        if seen is None and m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == area:
            outputs = m["content"]["data"].get("state", {}).get("outputs")
            if outputs is not None and expect in json.dumps(outputs):
                seen = time.perf_counter() - start
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    if seen is None:
        raise RuntimeError(f"no output showing {expect!r} after update to {value}")
    return seen


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def qplay(reruns, lives, memory_updates):
    km, kc = start_new_kernel(kernel_name="qplay", startup_timeout=600)
    try:
        out = run(kc, 'let s = slider("s", 0, 100000, 0);\ns')
        (s,) = model_ids(out, "FloatSliderModel")
        out = run(kc, "let y = s.value() * 2.0;\ny")
        (area,) = views(out)
        out = run(kc, 'let t = int_slider("t", 0, 100000, 0);\nlet t2 = t.clone();\n'
                      'display(&t);\nlive(&[&t], move || format!("t = {}", t2.value()))')
        (t,) = model_ids(out, "IntSliderModel")
        live_area = views(out)[1]
        pid = km.provisioner.process.pid
        timed_update(kc, s, 1, area, "2.0")  # warm
        before_reruns = rss_kib(pid)
        rerun = [timed_update(kc, s, i, area, f"{2 * i}.0") for i in range(2, reruns + 2)]
        after_reruns = rss_kib(pid)
        live = [timed_update(kc, t, i, live_area, f"t = {i}") for i in range(1, lives + 1)]
        before = rss_kib(pid)
        for i in range(memory_updates):
            timed_update(kc, t, lives + 1 + i, live_area, f"t = {lives + 1 + i}")
        after = rss_kib(pid)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return {"rerun_s": rerun, "live_s": live, "live_rss_growth_mib": (after - before) / 1024,
            "rerun_rss_growth_mib": (after_reruns - before_reruns) / 1024,
            "rss_mib": after / 1024}


def ipykernel(lives, memory_updates):
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        out = run(kc, "import ipywidgets as w\nfrom IPython.display import display\n"
                      "t = w.IntSlider(max=100000)\no = w.Output()\n"
                      "def f(change):\n"
                      "    o.outputs = ({'output_type': 'display_data', 'metadata': {},\n"
                      "                  'data': {'text/plain': f\"t = {change['new']}\"}},)\n"
                      "t.observe(f, 'value')\ndisplay(t, o)")
        (t,) = model_ids(out, "IntSliderModel")
        (o,) = model_ids(out, "OutputModel")
        pid = km.provisioner.process.pid
        timed_update(kc, t, 1, o, "t = 1")
        live = [timed_update(kc, t, i, o, f"t = {i}") for i in range(2, lives + 2)]
        before = rss_kib(pid)
        for i in range(memory_updates):
            timed_update(kc, t, lives + 2 + i, o, f"t = {lives + 2 + i}")
        after = rss_kib(pid)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return {"live_s": live, "live_rss_growth_mib": (after - before) / 1024, "rss_mib": after / 1024}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reruns", type=int, default=20)
    p.add_argument("--lives", type=int, default=100)
    p.add_argument("--memory-updates", type=int, default=500)
    a = p.parse_args()
    q = qplay(a.reruns, a.lives, a.memory_updates)
    r = ipykernel(a.lives, a.memory_updates)
    summary = {}
    for name, res in [("qplay", q), ("ipykernel", r)]:
        s = {k: v for k, v in res.items() if not k.endswith("_s")}
        for k in ("rerun_s", "live_s"):
            if k in res:
                s[k.replace("_s", "")] = {"p50": statistics.median(res[k]), "p95": pct(res[k], 0.95),
                                          "n": len(res[k])}
        summary[name] = s
        print(name, json.dumps(s), file=sys.stderr)
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
