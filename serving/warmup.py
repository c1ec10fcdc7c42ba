"""TF Serving warmup records: ``assets.extra/tf_serving_warmup_requests``.

The file is a TFRecord of ``PredictionLog`` protos (``tensorflow-serving-api``);
TF Serving replays them when it loads a version, so the first user request does
not pay for graph initialization.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from serving.signatures import BYTES_INPUT, BYTES_SIGNATURE

WARMUP_FILE = "tf_serving_warmup_requests"
# Batch sizes replayed on load; a batch shape Serving has seen starts fast.
WARMUP_BATCHES = (1, 8)


def predict_request(
    images: Sequence[bytes], model_name: str, signature_name: str = BYTES_SIGNATURE
) -> predict_pb2.PredictRequest:
    """A gRPC ``PredictRequest`` carrying encoded images to the bytes signature."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs[BYTES_INPUT].CopyFrom(tf.make_tensor_proto(list(images), dtype=tf.string, shape=[len(images)]))
    return request


def warmup_images(n: int, seed: int = 0) -> list[bytes]:
    """``n`` PNG images of speckle-like noise, gray and RGB, of different odd sizes."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = 181 + 16 * i, 243 - 8 * i
        gray = rng.gamma(2.0, 40.0, (h, w, 1)).clip(0, 255).astype(np.uint8)
        img = gray if i % 2 == 0 else np.repeat(gray, 3, axis=-1)
        out.append(tf.io.encode_png(img).numpy())
    return out


def write_warmup(path: Path, model_name: str, batches: Sequence[int] = WARMUP_BATCHES) -> Path:
    """Write one ``PredictionLog`` per batch size in ``batches`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for n in batches:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=predict_request(warmup_images(n), model_name))
            )
            writer.write(log.SerializeToString())
    return path


def read_warmup(path: Path) -> list[prediction_log_pb2.PredictionLog]:
    """Parse every record of a warmup file."""
    logs = []
    for raw in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(raw.numpy())
        logs.append(log)
    return logs
