"""Training config, run folders and the evaluation batch plan (no training here)."""

from __future__ import annotations

import pytest

from training.config import TrainConfig
from training.runs import increment_run_dir
from training.trainer import eval_batch_plan


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
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig.from_dict({**cfg.to_dict(), "warmup": 3})


def test_run_dirs_increment_and_never_overwrite(tmp_path) -> None:
    assert increment_run_dir(tmp_path, "seg", "exp") == tmp_path / "seg" / "exp"
    (tmp_path / "seg" / "exp").mkdir(parents=True)
    assert increment_run_dir(tmp_path, "seg", "exp").name == "exp2"
    (tmp_path / "seg" / "exp2").mkdir()
    assert increment_run_dir(tmp_path, "seg", "exp").name == "exp3"


@pytest.mark.parametrize(
    "n,replicas,max_b,expected",
    [
        (100, 1, 8, (8, False)),  # one replica: the largest batch
        (6, 2, 4, (3, False)),  # 6 = one full batch of 2 x 3
        (161, 2, 8, (7, False)),  # b=8: 161 % 16 = 1 leaves a replica empty; b=7: 161 % 14 = 7
        (7, 2, 8, (2, False)),  # b=3: 7 % 6 = 1 fails; b=2: 7 % 4 = 3 splits 2 + 1
        (5, 2, 4, (2, True)),  # b=2: 5 % 4 = 1 and b=1: 5 % 2 = 1 both fail: drop the remainder
    ],
)
def test_eval_batch_plan_never_leaves_a_replica_empty(n, replicas, max_b, expected) -> None:
    b, drop = eval_batch_plan(n, replicas, max_b)
    assert (b, drop) == expected
    global_batch = b * replicas
    assert b <= max_b and n >= global_batch  # the first batch is full and splits evenly
    rest = n % global_batch
    assert drop or rest == 0 or rest >= replicas  # no replica gets an empty last batch


def test_every_config_field_has_a_flag_and_flags_reach_the_config() -> None:
    import dataclasses

    import train

    args = train.parse_args([])
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert fields - set(train.DERIVED_FIELDS) == set(vars(args)) - set(train.RUN_FLAGS)
    # Flags left at their defaults give the dataclass's defaults, but for the image size, which depends on the device.
    from training.strategy import device_defaults

    expected = dataclasses.replace(TrainConfig(), img_size=device_defaults("seg")["img_size"])
    assert train.config_from_args(args) == expected
    argv = ["--task", "cls", "--fold", "all", "--folds", "3", "--channels", "1", "--no-export", "--epochs", "7",
            "--norm", "batch", "--classes", "benign", "malignant", "--no-oversample", "--patch-size", "32",
            "--num-layers", "6", "--drop-path", "0.2"]  # fmt: skip
    cfg = train.config_from_args(train.parse_args(argv))
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
        train.config_from_args(args)


def test_image_size_default_by_device(monkeypatch) -> None:
    import tensorflow as tf

    import train
    from training import strategy

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [] if kind == "GPU" else ["cpu"])
    assert strategy.device_defaults("seg") == {"img_size": 96}
    assert strategy.device_defaults("cls") == {"img_size": 128}
    assert train.config_from_args(train.parse_args(["--task", "seg"])).img_size == 96
    assert train.config_from_args(train.parse_args(["--task", "seg", "--img-size", "128"])).img_size == 128
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["gpu"])
    assert strategy.device_defaults("seg") == {"img_size": 128} == strategy.device_defaults("cls")
    assert train.config_from_args(train.parse_args(["--task", "seg"])).img_size == TrainConfig().img_size == 128


def test_flag_choices_come_from_the_library_constants() -> None:
    import train
    from models import normalize
    from training.config import INPUT_NORMS, MIXED_PRECISION, NORMS, SCHEDULES, STRATEGIES, TASKS

    choices = {a.dest: a.choices for a in train.build_parser()._actions}
    assert choices["task"] == TASKS and choices["norm"] == NORMS and choices["schedule"] == SCHEDULES
    assert choices["mixed_precision"] == MIXED_PRECISION and choices["strategy"] == STRATEGIES
    assert choices["input_norm"] == INPUT_NORMS == normalize.INPUT_NORMS
