"""Distribution strategy and mixed-precision policy for a run."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import keras
import tensorflow as tf

from core.errors import OptionError


def strategy_devices(strategy: tf.distribute.Strategy) -> list[str]:
    """The devices ``strategy`` trains on; for the default strategy, the one TensorFlow places on (a GPU if any)."""
    try:
        return [str(d) for d in strategy.extended.worker_devices]
    except RuntimeError:  # the default strategy has no worker_devices
        gpus = tf.config.list_logical_devices("GPU")
        return [(gpus or tf.config.list_logical_devices("CPU"))[0].name]


def make_strategy(kind: str, devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """Create the run's strategy.

    Args:
        kind: ``"auto"``/``"mirrored"``: ``MirroredStrategy`` over all local GPUs
            (or the CPU), but ``"auto"`` with a single device uses the default strategy;
            ``"multiworker"``: ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG`` (trained by
            :func:`training.loop.fit_distributed`, as Keras 3.15's ``fit`` cannot).
        devices: Explicit devices for ``MirroredStrategy`` (tests use two logical CPUs).

    Raises:
        ValueError: On an unknown kind, or ``"multiworker"`` without ``TF_CONFIG``.
    """
    if kind == "auto" and not devices and _local_device_count() == 1:
        # One device: the default strategy. MirroredStrategy would feed it through a
        # MultiDeviceIterator, whose generator dataset makes TensorFlow lower glibc's
        # M_TRIM_THRESHOLD to 128 KB ("Memory patch applied"), which costs up to 2x per
        # epoch in page faults on VMs like ours.
        return tf.distribute.get_strategy()
    if kind in ("auto", "mirrored"):
        return _mirrored(tuple(devices) if devices else None)
    if kind == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise OptionError(
                "`--strategy multiworker` needs the TF_CONFIG environment variable describing the cluster "
                '(e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
                '"index": 0}}); start the same command on every machine with its own task index'
            )
        return _multiworker()
    raise ValueError(f"`strategy` must be auto, mirrored or multiworker. Received: strategy={kind!r}")


def _local_device_count() -> int:
    gpus = tf.config.list_logical_devices("GPU")
    return len(gpus) if gpus else len(tf.config.list_logical_devices("CPU"))


# One strategy per device set and process: a second MirroredStrategy restarts the
# collective instance keys that TensorFlow's collective executor has already cached
# with the first run's shapes (synchronized batch norm then fails on a shape mismatch).
_MIRRORED: dict[tuple[str, ...], tf.distribute.Strategy] = {}


def _mirrored(devices: tuple[str, ...] | None) -> tf.distribute.Strategy:
    strategy = tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    key = tuple(sorted(tf.DeviceSpec.from_string(d).to_string() for d in strategy.extended.worker_devices))
    return _MIRRORED.setdefault(key, strategy)


_MULTIWORKER: list[tf.distribute.Strategy] = []


def _multiworker() -> tf.distribute.Strategy:
    """The process's one ``MultiWorkerMirroredStrategy`` (it can only be created once)."""
    if not _MULTIWORKER:
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise OptionError(f"TF_CONFIG is not valid JSON: {e}") from None
        _MULTIWORKER.append(tf.distribute.MultiWorkerMirroredStrategy())
    return _MULTIWORKER[0]


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


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief
