"""The `qplay eval` command line: JSON shape, sampling, data sources and errors."""

import hashlib
import http.server
import io
import json
import tarfile
import threading

import numpy as np
import pytest
from conftest import ROOT

TEST_BIN = ROOT / "data/cifar10/test_batch_jpeg75.bin"


def test_json_summary_has_every_field(qplay):
    out = json.loads(qplay("eval", "--model", "resnet8_int8", "--limit", "300", "--json").stdout)
    assert out["model"] == "resnet8_int8"
    assert out["framework"] == "onnx"
    assert "JPEG-q75" in out["dataset"]
    assert out["total"] == 300
    assert 0 <= out["correct"] <= 300
    assert out["accuracy"] == pytest.approx(out["correct"] / 300)
    assert len(out["per_class"]) == 10
    assert sum(c["total"] for c in out["per_class"]) == 300
    assert out["seconds"] > 0
    assert out["ci95"][0] <= out["accuracy"] <= out["ci95"][1]


def test_per_class_sample_is_stratified(qplay):
    out = json.loads(qplay("eval", "--model", "resnet8_int8_torch", "--per-class", "7", "--json").stdout)
    assert out["total"] == 70
    assert [c["total"] for c in out["per_class"]] == [7] * 10
    assert "ci95" in out


def test_text_output_names_the_dataset_honestly(qplay):
    out = qplay("eval", "--model", "resnet8_float", "--data", "lossless249").stdout
    assert "CIFAR-10 test, 249 lossless images" in out
    assert "%" in out


@pytest.mark.parametrize(
    "args, words",
    [
        (["--model", "resnet9"], ["unknown model `resnet9`", "resnet8_int8"]),
        (["--model", "/no/such/model.onnx"], ["/no/such/model.onnx", "does not exist"]),
        (["--model", "resnet8_int8", "--data", "nonsense"], ["nonsense"]),
        (["--model", "resnet8_int8", "--per-class", "2000"], ["2000"]),
    ],
)
def test_bad_input_is_explained(qplay, args, words):
    proc = qplay("eval", *args, check=False)
    assert proc.returncode != 0
    for w in words:
        assert w in proc.stderr, proc.stderr


def make_archive(records):
    """A small cifar-10-binary.tar.gz: test_batch.bin holds `records` records of the JPEG test set."""
    raw = TEST_BIN.read_bytes()[: records * 3073]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("test_batch.bin", raw), ("data_batch_1.bin", raw[: 10 * 3073])]:
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_archive_path_and_url(qplay, tmp_path):
    archive = make_archive(40)
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(archive)
    from_file = json.loads(qplay("eval", "--model", "resnet8_int8", "--data", path, "--json").stdout)
    assert from_file["total"] == 40

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(archive)))
            self.end_headers()
            self.wfile.write(archive)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/cifar-10-binary.tar.gz"
        from_url = json.loads(qplay("eval", "--model", "resnet8_int8", "--data", url, "--json").stdout)
    finally:
        server.shutdown()
    assert from_url["correct"] == from_file["correct"]
    assert from_url["total"] == 40


def test_corrupt_data_file_is_refused(qplay, tmp_path):
    bad = tmp_path / "cut.bin"
    bad.write_bytes(TEST_BIN.read_bytes()[: 5 * 3073 + 100])
    proc = qplay("eval", "--model", "resnet8_int8", "--data", bad, check=False)
    assert proc.returncode != 0
    assert "cut.bin" in proc.stderr and "3073" in proc.stderr


def test_save_predictions_one_per_line(qplay, tmp_path):
    out = tmp_path / "p.txt"
    qplay("eval", "--model", "resnet8_uint8", "--limit", "25", "--save-predictions", out)
    preds = np.loadtxt(out, dtype=int)
    assert preds.shape == (25,) and preds.min() >= 0 and preds.max() <= 9
