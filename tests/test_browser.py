"""The notebooks in a real JupyterLab (headless Debian Chromium, playwright-core):
`tests/browser/reactive.mjs` runs all cells, moves a slider, checks that the dependent cell
and the live view change while the model cell does not rerun, reloads the page and checks the
widgets come back. Screenshots land in target/browser/."""

import json
import pathlib
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_slider_reruns_dependents_in_jupyterlab():
    assert shutil.which("node"), "node is needed (make browser)"
    assert pathlib.Path("/usr/bin/chromium").exists(), "chromium is needed (make browser)"
    out = ROOT / "target" / "browser"
    run = subprocess.run(["node", str(ROOT / "tests/browser/reactive.mjs"), str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-6000:]
    summary = json.loads(run.stdout)
    assert all(c["ok"] for c in summary["checks"]), summary
    assert (out / "reactive-after.png").exists()


def test_playground_sliders_buttons_and_reset_in_jupyterlab():
    """`tests/browser/playground.mjs`: move one layer's scale slider and see the quick accuracy
    and the histogram change (the model cell does not rerun), press the full-evaluation button
    and see the progress bar reach its end and the result appear, press Reset and see the
    original numbers back."""
    out = ROOT / "target" / "browser"
    run = subprocess.run(["node", str(ROOT / "tests/browser/playground.mjs"), str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-6000:]
    summary = json.loads(run.stdout)
    assert all(c["ok"] for c in summary["checks"]), summary
    assert (out / "playground.png").exists()
