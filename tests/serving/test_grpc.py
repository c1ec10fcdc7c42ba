"""docs/deployment.md's gRPC example, run against a stand-in PredictionService (not TF Serving) serving an export."""

from __future__ import annotations

import re
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.conftest import REPO, odd_images

pytestmark = pytest.mark.slow


class _StandIn(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers Predict by running the requested signature of one loaded SavedModel."""

    def __init__(self, name, loaded):
        self.name, self.loaded = name, loaded

    def Predict(self, request, context):  # noqa: N802 (gRPC's naming)
        if request.model_spec.name != self.name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found: {request.model_spec.name}")
        fn = self.loaded.signatures[request.model_spec.signature_name or "serving_default"]
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        response = predict_pb2.PredictResponse()
        for k, v in fn(**inputs).items():
            response.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
        return response


def _readme_grpc_example() -> str:
    text = (REPO / "docs" / "deployment.md").read_text()
    block = text.split("gRPC (port 8500):", 1)[1]
    return re.search(r"```python\n(.*?)```", block, re.S).group(1)


def test_readme_grpc_example_gets_the_mask(exported, tmp_path):
    version_dir = exported["seg"]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _StandIn("unet", tf.saved_model.load(str(version_dir))), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        image = odd_images(tmp_path / "img")[0]
        code = _readme_grpc_example().replace("localhost:8500", f"127.0.0.1:{port}").replace("scan.png", str(image))
        scope: dict = {}
        exec(compile(code, "docs/deployment.md:gRPC example", "exec"), scope)
    finally:
        server.stop(None)
    expected = tf.saved_model.load(str(version_dir)).signatures["serving_default"](
        images=tf.constant([image.read_bytes()])
    )["mask_probability"]
    assert scope["mask"].shape == (1, 32, 32)
    np.testing.assert_allclose(scope["mask"], expected.numpy(), rtol=0, atol=1e-6)
