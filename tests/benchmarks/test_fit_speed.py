"""fit_speed.py: arm parsing, one real timed fit, and the section it writes."""

from __future__ import annotations

import fit_speed as fs
import pytest


def test_an_arm_is_task_model_size() -> None:
    assert fs.parse_arm("cls:efficientnet_lite0:224") == ("cls", "efficientnet_lite0", 224)
    for bad in ("cls:efficientnet_lite0", "cls:efficientnet_lite0:big", "seg:unet:96:1"):
        with pytest.raises(ValueError, match="task:model:size"):
            fs.parse_arm(bad)


def test_a_bad_arm_is_a_usage_error_naming_it(capsys) -> None:
    with pytest.raises(SystemExit):
        fs.parse_args(["--arms", "seg:unet"])
    assert "seg:unet" in capsys.readouterr().err


def test_the_joint_model_trains_on_the_targets_it_is_given() -> None:
    row = fs.worker("joint:unet:32", images=8, seconds=0.01)
    assert row["images_per_second"] > 0 and row["timed_seconds"] >= 0.01
    assert row["parameters"] > 1e6 and "tensorflow" in row["versions"]


def _row(task, model, size, variant, ips):
    return {"task": task, "model": model, "img_size": size, "variant": variant, "images_per_second": ips,
            "warmup_seconds": 12.0, "parameters": 3_420_000, "versions": "tensorflow 2.21.0"}  # fmt: skip


def test_section_puts_both_malloc_settings_of_a_model_on_one_row() -> None:
    rows = [
        _row("cls", "efficientnet_lite0", 224, "default", 9.5),
        _row("cls", "efficientnet_lite0", 224, "no-trim", 10.25),
    ]
    rows.append(_row("seg", "unet", 96, "no-trim", 30.0))
    cpu = {"model": "AMD EPYC", "cores": 2, "avx512": True}
    text = fs.markdown(
        {"command": "c", "date": "2026-12-06", "commit": "abc1234", "images": 64, "cpu": cpu, "rows": rows}
    )
    assert "| cls | efficientnet_lite0 | 224 | 3.42 | 9.5 | 10.2 | 12.0 |" in text
    assert "| seg | unet | 96 | 3.42 | — | 30.0 | — |" in text
    assert "MALLOC_MMAP_THRESHOLD_=17179869184" in text and "AMD EPYC" in text
