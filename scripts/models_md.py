"""Writes models/MODELS.md: one row per bundled model with its size, sha256 and the accuracy that
`qplay eval` measures, beside the seed project's reference numbers. Run by `make models` after
models/build.py, with the release `qplay` on PATH (scripts/env.sh)."""

import hashlib
import json
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"

# The seed project's numbers on the original (lossless) 10k test set.
SEED = {
    "resnet8_float": "87.19 %",
    "resnet8_int8": "85.58 %",
    "resnet8_uint8": "86.75 %",
    "resnet8_int8_torch": "85.68 %",
}

WHAT = {
    "resnet8_float": "float, faithful port of the Keras model (BN folded)",
    "resnet8_int8": "QDQ per-tensor MinMax, int8 activations / int8 weights",
    "resnet8_uint8": "QDQ per-tensor MinMax, uint8 activations / uint8 weights",
    "resnet8_int8_perchannel": "QDQ MinMax, int8, per-channel weights",
    "resnet8_float_torch": "float, same weights as a torch module (TorchScript)",
    "resnet8_int8_torch": "FX graph mode int8, fbgemm default qconfig (TorchScript)",
}


def evaluate(name, data):
    out = subprocess.run(
        ["qplay", "eval", "--model", name, "--data", data, "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    r = json.loads(out)
    return f"{100 * r['accuracy']:.2f} % ({r['correct']}/{r['total']})"


def main():
    files = sorted(p for p in MODELS.iterdir() if p.suffix in (".onnx", ".pt"))
    rows = []
    for f in files:
        name = f.stem
        rows.append(
            f"| `{name}` | {f.name} | {WHAT.get(name, '')} | {f.stat().st_size / 1024:.1f} KiB "
            f"| {evaluate(name, 'test')} | {evaluate(name, 'lossless249')} | {SEED.get(name, '—')} |"
        )
    sums = [f"    {hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}" for f in files]
    template = (MODELS / "MODELS.template.md").read_text()
    text = template.replace("{{TABLE}}", "\n".join(rows)).replace("{{SHA256}}", "\n".join(sums))
    (MODELS / "MODELS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
