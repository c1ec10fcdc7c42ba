"""Distribution strategy and mixed-precision policy for a run."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf


def make_strategy(kind: str, devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """Create the run's strategy.

    Args:
        kind: ``"auto"``/``"mirrored"``: ``MirroredStrategy`` over all local GPUs
            (or the CPU); ``"multiworker"`` (``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``)
            raises for now: Keras 3.15's ``fit`` cannot run under it.
        devices: Explicit devices for ``MirroredStrategy`` (tests use two logical CPUs).

    Raises:
        ValueError: On an unknown kind, and for ``"multiworker"`` (see above).
    """
    if kind in ("auto", "mirrored"):
        return _mirrored(tuple(devices) if devices else None)
    if kind == "multiworker":
        raise ValueError(
            "`--strategy multiworker` does not work yet: Keras 3.15's fit() cannot run under "
            "MultiWorkerMirroredStrategy (it reduces scalar logs with strategy.reduce('MEAN', axis=0); "
            "tensorflow/tensorflow#72388). Use --strategy mirrored for the GPUs of one machine."
        )
    raise ValueError(f"`strategy` must be auto, mirrored or multiworker. Received: strategy={kind!r}")


# One strategy per device set and process: a second MirroredStrategy restarts the
# collective instance keys that TensorFlow's collective executor has already cached
# with the first run's shapes (synchronized batch norm then fails on a shape mismatch).
_MIRRORED: dict[tuple[str, ...], tf.distribute.Strategy] = {}


def _mirrored(devices: tuple[str, ...] | None) -> tf.distribute.Strategy:
    strategy = tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    key = tuple(sorted(tf.DeviceSpec.from_string(d).to_string() for d in strategy.extended.worker_devices))
    return _MIRRORED.setdefault(key, strategy)


def resolve_precision(choice: str) -> str:
    """Map ``--mixed-precision`` to a Keras dtype policy name.

    ``auto``: float16 on GPUs before compute capability 8.0, bfloat16 from 8.0 on,
    float32 without a GPU (float16 is unusably slow on CPUs). ``fp16``/``bf16``/``off``
    force ``mixed_float16``/``mixed_bfloat16``/``float32``.
    """
    if choice == "off":
        return "float32"
    if choice == "fp16":
        return "mixed_float16"
    if choice == "bf16":
        return "mixed_bfloat16"
    if choice != "auto":
        raise ValueError(f"`mixed_precision` must be auto, off, fp16 or bf16. Received: {choice!r}")
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "float32"
    capabilities = []
    for gpu in gpus:
        cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        capabilities.append(tuple(cc) if cc else (0, 0))
    return "mixed_bfloat16" if min(capabilities) >= (8, 0) else "mixed_float16"


def set_precision(policy: str) -> None:
    """Set the global Keras dtype policy."""
    keras.mixed_precision.set_global_policy(policy)
