"""The notebooks in a real JupyterLab (headless Debian Chromium, playwright-core). Each script
in tests/browser/ opens its notebook, runs all cells and drives the widgets as a user would:
- reactive.mjs: move a slider; the dependent cell and the live view change, the model cell
  does not rerun; reload the page and the widgets come back with the user's value;
- playground.mjs: move one layer's scale slider and see the quick accuracy and the histogram
  change (the model cell does not rerun); choose the xmodel_err overlay in the model's graph
  and see every box's value on hover equal the SQNR table's; click a box and see the layer
  dropdown show its tensor and the edit cell rerun on it; press the full-evaluation button and
  see the progress bar reach its end and the result appear; press Reset and see the original
  numbers;
- voila.mjs: the playground as the Voilà app `make app` serves: results shown with the code
  hidden, the graph widget drawn and recoloured by its overlay dropdown, and the scale slider
  changes the quick accuracy.
Screenshots land in target/browser/."""

import json
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("script", ["reactive.mjs", "playground.mjs", "voila.mjs"])
def test_notebook_in_jupyterlab(script):
    assert shutil.which("node"), "node is needed (make browser)"
    assert pathlib.Path("/usr/bin/chromium").exists(), "chromium is needed (make browser)"
    out = ROOT / "target" / "browser"
    run = subprocess.run(["node", str(ROOT / "tests" / "browser" / script), str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-6000:]
    summary = json.loads(run.stdout)
    assert summary["checks"] and all(c["ok"] for c in summary["checks"]), summary
