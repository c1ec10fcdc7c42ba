"""The TF Serving REST client against fixtures written from TF Serving's REST API documentation.

The fixtures (``fixtures/``, see its README) are hand-written from the documented
formats, not recorded from a server. The end-to-end test uses a stand-in HTTP
server in this file that speaks the same documented format; it is not TF Serving.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import predict
from serving.rest import ServingError, parse_response, predict_url, request_body

FIXTURES = Path(__file__).parent / "fixtures"


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_request_body_matches_the_documented_b64_row_format():
    body = request_body([b"image bytes", b"awesome image bytes"])
    assert body == _fixture("predict_request_b64.json")
    assert json.loads(json.dumps(body)) == body  # plain JSON, no bytes objects


def test_row_response_with_several_outputs_becomes_one_array_per_output():
    out = parse_response(_fixture("predict_response_row_multi.json"))
    assert set(out) == {"probabilities", "class_id", "class_name"}
    np.testing.assert_allclose(out["probabilities"], [[0.1, 0.7, 0.2], [0.05, 0.15, 0.8]])
    np.testing.assert_array_equal(out["class_id"], [1, 2])
    assert out["class_name"].tolist() == ["benign", "malignant"]


def test_row_response_with_one_output_and_columnar_response():
    single = parse_response(_fixture("predict_response_row_single.json"), output_name="y")
    np.testing.assert_allclose(single["y"], [3.5, 4.0, 5.5])
    cols = parse_response(_fixture("predict_response_columnar.json"))
    assert cols["mask_probability"].shape == (2, 2, 2)
    np.testing.assert_array_equal(cols["original_height"], [480, 512])


def test_error_response_raises_with_the_servers_message():
    with pytest.raises(ServingError, match=r"Servable not found for request: Latest\(half\)"):
        parse_response(_fixture("error_response.json"))
    with pytest.raises(ServingError, match="neither"):
        parse_response({"result": []})


def test_binary_outputs_are_decoded_from_b64():
    out = parse_response({"predictions": [{"b64": base64.b64encode(b"\x00\x01").decode()}]}, output_name="png_bytes")
    assert out["png_bytes"].tolist() == [b"\x00\x01"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://localhost:8501/v1/models/unet", "http://localhost:8501/v1/models/unet:predict"),
        ("http://h:8501/v1/models/unet/versions/3", "http://h:8501/v1/models/unet/versions/3:predict"),
        ("https://h/v1/models/cls/labels/stable:predict", "https://h/v1/models/cls/labels/stable:predict"),
    ],
)
def test_predict_url_accepts_model_urls(given, expected):
    assert predict_url(given) == expected


def test_predict_url_rejects_other_urls():
    with pytest.raises(ValueError, match="--server"):
        predict_url("localhost:8501/unet")


class _StandInServing(BaseHTTPRequestHandler):
    """Answers ``POST /v1/models/<name>:predict`` like the documented REST API, running a SavedModel."""

    signature = None
    name = ""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != f"/v1/models/{self.name}:predict":
            return self._send(404, {"error": f"Servable not found for request: Latest({self.path})"})
        images = [base64.b64decode(i["b64"]) for i in body["instances"]]
        try:
            out = self.signature(images=tf.constant(images))
        except tf.errors.InvalidArgumentError as e:
            return self._send(400, {"error": e.message})
        cols = {k: v.numpy().tolist() for k, v in out.items()}
        text = {k: [x.decode() if isinstance(x, bytes) else x for x in v] for k, v in cols.items()}
        rows = [{k: v[i] for k, v in text.items()} for i in range(len(images))]
        return self._send(200, {"predictions": rows})

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_predict_over_rest_matches_the_local_savedmodel(exported, tmp_path):
    version_dir = exported["cls"]
    handler = type("H", (_StandInServing,), {"name": "efficientnet_b0"})
    handler.signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from tests.conftest import odd_images

        src = tmp_path / "src"
        odd_images(src)
        (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        url = f"http://127.0.0.1:{server.server_port}/v1/models/efficientnet_b0"
        remote = predict.run(str(src), server=url, out=str(tmp_path / "remote"))
        local = predict.run(str(src), model=str(version_dir.parent), out=str(tmp_path / "local"))
        with pytest.raises(ServingError, match="HTTP 404.*Servable not found"):
            predict.run(str(src), server=url.replace("efficientnet_b0", "nope"), out=str(tmp_path / "x"))
    finally:
        server.shutdown()
    assert remote.failed == local.failed == 1
    assert [r["file"] for r in remote.rows] == [r["file"] for r in local.rows]
    for r, lo in zip(remote.rows, local.rows, strict=True):
        assert r["error"].startswith("unreadable") == lo["error"].startswith("unreadable") == ("broken" in r["file"])
        if not r["error"]:
            assert r["class_name"] == lo["class_name"]
            assert r["prob_malignant"] == pytest.approx(lo["prob_malignant"], abs=1e-6)
