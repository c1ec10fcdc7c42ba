"""Strategy choice and mixed-precision policy."""

from __future__ import annotations

import pytest
import tensorflow as tf

from training import strategy as strategy_mod
from training.strategy import make_strategy, resolve_precision


def test_auto_on_one_device_is_the_default_strategy(monkeypatch) -> None:
    monkeypatch.setattr(strategy_mod, "_local_device_count", lambda: 1)
    s = make_strategy("auto")
    assert not isinstance(s, tf.distribute.MirroredStrategy) and s.num_replicas_in_sync == 1
    assert s is tf.distribute.get_strategy()


def test_auto_on_several_devices_and_mirrored_mirror() -> None:
    # conftest exposes two logical CPUs
    assert isinstance(make_strategy("auto"), tf.distribute.MirroredStrategy)
    assert make_strategy("auto").num_replicas_in_sync == 2
    one = make_strategy("mirrored", ["/cpu:0"])
    assert isinstance(one, tf.distribute.MirroredStrategy) and one.num_replicas_in_sync == 1
    assert make_strategy("mirrored", ["/cpu:0"]) is one  # one strategy per device set and process


def test_multiworker_needs_tf_config_and_bad_kinds_raise(monkeypatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        make_strategy("multiworker")
    with pytest.raises(ValueError, match="auto, mirrored or multiworker"):
        make_strategy("tpu")


def test_precision_choices() -> None:
    assert resolve_precision("auto") == "float32"  # no GPU here
    assert resolve_precision("bf16") == "mixed_bfloat16" and resolve_precision("fp16") == "mixed_float16"
    with pytest.raises(ValueError, match="mixed_precision"):
        resolve_precision("fp8")


def test_strategy_devices_names_the_default_strategys_device_and_each_replica() -> None:
    import tensorflow as tf

    from training.strategy import strategy_devices

    (device,) = strategy_devices(tf.distribute.get_strategy())  # one device: what a CPU-only run records
    assert "CPU:0" in device or "GPU:0" in device
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert [d.rsplit("/", 1)[-1] for d in strategy_devices(mirrored)] == ["device:CPU:0", "device:CPU:1"]
