"""train_step.py: FLOP counting, merging invocations, and the section it writes."""

from __future__ import annotations

import json

import pytest
import train_step as ts


def _row(setting, variant, ips, command, flops=1.5e9):
    return {
        "setting": setting, "variant": variant, "images_per_second": ips, "warmup_seconds": 10.0,
        "forward_flops": flops, "train_gflops_per_second": ips * 3 * flops / 1e9, "command": command,
        "date": "2026-12-02", "commit": "abc1234", "versions": "tensorflow 2.21.0",
    }  # fmt: skip


def _result(rows, command):
    cpu = {"model": "AMD EPYC", "cores": 2, "ghz": 2.0, "avx512": False, "peak_gflops": 128.0}
    return {"command": command, "date": "2026-12-02", "commit": "abc1234", "cpu": cpu, "rows": rows}


def test_conv_flops_of_a_small_keras_model_by_hand() -> None:
    import keras

    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, padding="same")(x)  # 8*8 outputs * 3*3*3*4 MACs
    y = keras.layers.Conv2DTranspose(2, 2, strides=2)(y)  # 8*8 inputs * 2*2*4*2 MACs
    model = keras.Model(x, y)
    assert ts.conv_flops_keras(model) == 2 * (64 * 108 + 64 * 32)


def test_a_new_invocation_keeps_other_commands_rows_and_replaces_its_own(tmp_path) -> None:
    path = tmp_path / "r.json"
    first = _result([_row("default", "default", 7.0, "a"), _row("onednn", "default", 13.0, "a")], "a")
    path.write_text(json.dumps(first))
    merged = ts.merge_rows(path, _result([_row("onednn", "default", 11.0, "b")], "b"))
    assert [(r["setting"], r["command"]) for r in merged["rows"]] == [
        ("default", "a"),
        ("onednn", "a"),
        ("onednn", "b"),
    ]
    again = ts.merge_rows(path, _result([_row("default", "default", 8.0, "a")], "a"))
    assert [(r["setting"], r["images_per_second"]) for r in again["rows"]] == [("default", 8.0)]


def test_section_numbers_the_runs_and_shows_share_of_peak() -> None:
    rows = [_row("onednn", "default", 12.8, "a"), _row("onednn", "no-trim", 12.0, "b")]
    rows.append(
        {"setting": "basicunet", "variant": "default", "skipped": "PyTorch or MONAI not installed", "command": "b"}
    )
    text = ts.markdown({**_result(rows, "b"), "note": "A note."})
    assert "Run 1: `a`" in text and "Run 2: `b`" in text
    assert "| 1 | U-Net | onednn | default | 1.50 | 12.8 | 57.6 | 45% | 10.0 |" in text
    assert "| 2 | BasicUNet | basicunet | default | - | skipped: PyTorch or MONAI not installed |" in text
    assert text.rstrip().endswith("A note.")


@pytest.mark.parametrize("setting", ["onednn+inter1", "onednn+intra1"])
def test_thread_settings_set_both_pools(setting) -> None:
    env, jit, threads = ts.SETTINGS[setting]
    assert env == {"TF_ENABLE_ONEDNN_OPTS": "1"} and jit is False and sorted(threads) == [1, 2]
