"""`make sweep`: the playground run in batch over the bundled models with papermill, one
executed notebook and one JSON summary per run.

    python scripts/sweep.py --out target/sweep [--models a,b] [-p scale_factor 1.5] ...

Each run is `papermill notebooks/playground.ipynb OUT/playground-MODEL.ipynb -p model MODEL
[-p NAME VALUE ...]` on the qplay kernel (papermill writes the parameters as Rust with the
project's translator, python/qplay_jupyter); the summary is the JSON object the notebook's last
cell shows (section 7), saved as OUT/MODEL.json. The same command runs anywhere papermill runs,
so a scheduler can give each model (or each parameter set) a job of its own.
"""

import argparse
import json
import pathlib
import sys

import papermill

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ["resnet8_int8", "resnet8_uint8", "resnet8_int8_perchannel", "resnet8_int8_torch"]


def value(text):
    """A command-line value as JSON when it parses as such (1.5, -3, true), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def summary(nb_path):
    """The last application/json output of an executed notebook."""
    nb = json.loads(pathlib.Path(nb_path).read_text())
    for cell in reversed(nb["cells"]):
        for out in reversed(cell.get("outputs", [])):
            data = out.get("data", {})
            if "application/json" in data:
                return data["application/json"]
    raise RuntimeError(f"{nb_path} shows no JSON summary")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "target" / "sweep"))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--notebook", default=str(ROOT / "notebooks" / "playground.ipynb"))
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="a notebook parameter for every run")
    a = p.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    params = {name: value(v) for name, v in a.parameter}
    failed = []
    for model in a.models.split(","):
        nb_out = out / f"playground-{model}.ipynb"
        print(f"==> {model} → {nb_out}", file=sys.stderr, flush=True)
        try:
            papermill.execute_notebook(a.notebook, str(nb_out), kernel_name="qplay",
                                       parameters={"model": model, **params},
                                       cwd=str(ROOT / "notebooks"), progress_bar=False)
            s = summary(nb_out)
            (out / f"{model}.json").write_text(json.dumps(s, indent=1) + "\n")
            print(json.dumps(s), flush=True)
        except Exception as e:  # papermill raises with the failing cell's error in the message
            failed.append(model)
            print(f"{model}: {e}", file=sys.stderr)
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (their executed notebooks show the error)")


if __name__ == "__main__":
    main()
