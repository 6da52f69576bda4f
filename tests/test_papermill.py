"""papermill on the qplay kernel: the Rust parameter translator (python/qplay_jupyter, found
through papermill's engine entry point) and `make sweep` (scripts/sweep.py)."""

import json
import subprocess
import sys

import nbformat
import pytest
from papermill.exceptions import PapermillException
from papermill.translators import translate_parameters

from conftest import ROOT


def rust(params):
    return translate_parameters("qplay", "rust", params, "Parameters")


def test_parameters_become_typed_rust_lets():
    code = rust({"model": 'my "q"\\model\n', "k": 1.5, "n": -3, "whole": 2.0, "on": True,
                 "ks": [0.5, 1.0], "tiny": 1e-05, "nothing": None, "nan": float("nan")})
    assert code.splitlines() == [
        "// Parameters",
        'let model = "my \\"q\\"\\\\model\\n";',
        "let k = 1.5f64;",
        "let n = -3i64;",
        "let whole = 2.0f64;",
        "let on = true;",
        "let ks = vec![0.5f64, 1.0f64];",
        "let tiny = 1e-05f64;",
        "let nothing = None::<String>;",
        "let nan = f64::NAN;",
    ]
    # The language alone finds it too (a kernel of another name).
    assert translate_parameters("other-kernel", "rust", {"x": 1}, "P") == "// P\nlet x = 1i64;\n"


@pytest.mark.parametrize("params, message", [
    ({"m": {"a": 1}}, "parameter 'm': a mapping"),
    ({"m": [1, "a"]}, "parameter 'm': a Rust vec! holds one type"),
    ({"not a name": 1}, "'not a name' is not a Rust variable name"),
    ({"big": 2**70}, "does not fit a Rust i64"),
])
def test_what_rust_cannot_take_is_refused_by_name(params, message):
    with pytest.raises(PapermillException, match=message.replace("!", "\\!")):
        rust(params)


def sweep(tmp_path, *args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "sweep.py"), "--out", str(tmp_path),
                           *args], capture_output=True, text=True, timeout=1500)


def test_sweep_runs_the_playground_with_parameters(tmp_path):
    run = sweep(tmp_path, "--models", "resnet8_uint8", "-p", "scale_factor", "1.5",
                "-p", "zero_point_shift", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "resnet8_uint8.json").read_text())
    assert summary["model"].startswith("resnet8_uint8") and summary["framework"] == "onnx"
    assert summary["scale_factor"] == 1.5 and summary["zero_point_shift"] == 2
    assert summary["scale"] == pytest.approx(summary["original_scale"] * 1.5, rel=1e-6)
    assert summary["zero_point"] == min(255, summary["original_zero_point"] + 2)
    assert summary["quick_images"] == 200 and 0 < summary["quick_accuracy"] < 1
    nb = nbformat.read(tmp_path / "playground-resnet8_uint8.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "let scale_factor = 1.5f64;" in injected[0].source
    assert 'let model = "resnet8_uint8";' in injected[0].source
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


def test_a_parameter_out_of_range_fails_with_its_name_and_range(tmp_path):
    run = sweep(tmp_path, "--models", "resnet8_int8", "-p", "scale_factor", "10")
    assert run.returncode != 0
    assert "scale_factor 10 is outside the slider's range 0.25 to 4" in run.stderr, run.stderr[-3000:]
    assert not (tmp_path / "resnet8_int8.json").exists()
