"""The run config and its command line (no training here)."""

from __future__ import annotations

import pytest

from config.train import TrainConfig


def test_config_round_trips_and_rejects_bad_values() -> None:
    cfg = TrainConfig(epochs=3, classes=("benign", "malignant"), schedule="constant")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert (TrainConfig().lr, TrainConfig(task="cls").lr, TrainConfig(model="segformer_b1").lr) == (1e-3,) * 3
    assert TrainConfig(task="cls", model="deit_tiny").lr == TrainConfig(task="cls", model="mit_b0_cls").lr == 1e-4
    assert TrainConfig(task="cls", model="deit_tiny", lr=3e-4).lr == 3e-4  # a given rate is kept
    assert TrainConfig.from_dict(TrainConfig(task="cls", model="deit_tiny").to_dict()).lr == 1e-4
    arch = TrainConfig(patch_size=32, num_layers=6, drop_path=0.0)
    assert TrainConfig.from_dict(arch.to_dict()) == arch
    assert arch.architecture() == {"patch_size": 32, "num_layers": 6, "drop_path": 0.0}
    assert TrainConfig().architecture() == {"patch_size": None, "num_layers": None, "drop_path": None}
    for bad in (
        {"schedule": "step"},
        {"mixed_precision": "fp8"},
        {"classes": ("cyst",)},
        {"epochs": 0},
        {"patch_size": 0},
        {"num_layers": -1},
        {"target_sensitivity": 1.5},
        {"target_sensitivity": -0.1},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)
    assert TrainConfig().target_sensitivity == 0.9 and TrainConfig(target_sensitivity=0).target_sensitivity == 0
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig.from_dict({**cfg.to_dict(), "warmup": 3})


def test_every_config_field_has_a_flag_and_flags_reach_the_config() -> None:
    import dataclasses

    import train
    from config.flags import config_from_args
    from config.train import device_img_size

    args = train.parse_args([])
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert fields - {"holdout_site"} == set(vars(args)) - set(train.RUN_FLAGS)  # --fold site:NAME sets holdout_site
    # Flags left at their defaults give the dataclass's defaults, but for the image size, which depends on the device.
    expected = dataclasses.replace(TrainConfig(), img_size=device_img_size("seg"))
    assert config_from_args(args) == expected
    argv = ["--task", "cls", "--fold", "all", "--folds", "3", "--channels", "1", "--no-export", "--epochs", "7",
            "--norm", "batch", "--classes", "benign", "malignant", "--no-oversample", "--patch-size", "32",
            "--num-layers", "6", "--drop-path", "0.2"]  # fmt: skip
    cfg = config_from_args(train.parse_args(argv))
    assert (cfg.task, cfg.fold, cfg.folds, cfg.channels, cfg.export, cfg.epochs, cfg.norm) == (
        "cls",
        -1,
        3,
        1,
        False,
        7,
        "batch",
    )
    assert cfg.classes == ("benign", "malignant") and cfg.oversample is False
    assert cfg.architecture() == {"patch_size": 32, "num_layers": 6, "drop_path": 0.2}
    # A field the parser does not know would be dropped silently: it is an error instead.
    del args.folds
    with pytest.raises(ValueError, match=r"no flag for \['folds'\]"):
        config_from_args(args)


def test_image_size_default_by_device(monkeypatch) -> None:
    import tensorflow as tf

    import train
    from config.flags import config_from_args
    from config.train import device_img_size

    def cfg(argv):
        return config_from_args(train.parse_args(argv))

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [] if kind == "GPU" else ["cpu"])
    assert device_img_size("seg") == 96
    assert device_img_size("cls") == 128
    assert cfg(["--task", "seg"]).img_size == 96
    assert cfg(["--task", "seg", "--img-size", "128"]).img_size == 128
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["gpu"])
    assert device_img_size("seg") == 128 == device_img_size("cls")
    assert cfg(["--task", "seg"]).img_size == TrainConfig().img_size == 128


def test_flag_choices_come_from_the_library_constants() -> None:
    import train
    from config.train import MIXED_PRECISION, SCHEDULES, STRATEGIES, TASKS
    from losses.classification import CLS_LOSSES
    from losses.segmentation import SEG_LOSSES
    from models.options import INPUT_NORMS, NORMS
    from models.registry import model_names
    from pipeline.augment import PRESETS

    choices = {a.dest: a.choices for a in train.build_parser()._actions}
    assert choices["task"] == TASKS and choices["norm"] == NORMS and choices["schedule"] == SCHEDULES
    assert choices["mixed_precision"] == MIXED_PRECISION and choices["strategy"] == STRATEGIES
    assert choices["input_norm"] == INPUT_NORMS
    assert choices["model"] == model_names() and choices["augment"] == list(PRESETS)
    assert choices["loss"] == [*SEG_LOSSES, *CLS_LOSSES] and choices["cls_loss"] == list(CLS_LOSSES)
