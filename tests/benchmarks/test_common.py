"""Benchmark helpers: malloc environments, merging saved runs, BENCHMARKS.md sections."""

from __future__ import annotations

import argparse
import json

import _common
import numpy as np
import pytest


def test_variant_env_sets_exactly_the_variants_malloc_settings(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1")
    monkeypatch.setenv("KEEP_ME", "yes")
    default = _common.variant_env("default")
    no_trim = _common.variant_env("no-trim")
    assert "MALLOC_TRIM_THRESHOLD_" not in default and "MALLOC_MMAP_THRESHOLD_" not in default
    assert no_trim["MALLOC_TRIM_THRESHOLD_"] == no_trim["MALLOC_MMAP_THRESHOLD_"] == "17179869184"
    assert default["KEEP_ME"] == no_trim["KEEP_ME"] == "yes"


def test_write_section_replaces_its_block_and_keeps_the_rest(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nintro\n\n<!-- a:start -->\nold\n<!-- a:end -->\n\nprose after\n")
    _common.write_section(md, "a", "new body")
    _common.write_section(md, "b", "appended")
    text = md.read_text()
    assert "old" not in text
    assert text.index("intro") < text.index("new body") < text.index("prose after") < text.index("appended")
    assert text.count("<!-- a:start -->") == 1 and text.endswith("<!-- b:end -->\n")


def test_merge_previous_replaces_runs_measured_again_and_keeps_the_others(tmp_path):
    path = tmp_path / "r.json"
    old = {
        "command": "old cmd",
        "protocol": "P",
        "runs": [{"seed": 0, "dice": 0.1}, {"seed": 1, "dice": 0.2}],
    }
    path.write_text(json.dumps(old))
    merged = _common.merge_previous(
        path, {"command": "new cmd", "protocol": "P", "runs": [{"seed": 1, "dice": 0.3}]}, ("seed",)
    )
    assert [(r["seed"], r["dice"], r["command"]) for r in merged["runs"]] == [(0, 0.1, "old cmd"), (1, 0.3, "new cmd")]
    assert merged["commands"] == ["old cmd", "new cmd"]


def test_merge_previous_drops_runs_of_another_protocol(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"command": "c", "protocol": "30 epochs", "runs": [{"seed": 0}]}))
    merged = _common.merge_previous(path, {"command": "d", "protocol": "2 epochs", "runs": [{"seed": 5}]}, ("seed",))
    assert [r["seed"] for r in merged["runs"]] == [5]


def test_save_runs_merges_writes_the_json_and_renders_the_section(tmp_path):
    args = argparse.Namespace(json=tmp_path / "r.json", markdown=tmp_path / "B.md", no_markdown=False)
    for seed in (0, 1, 0):
        result = {"command": f"run {seed}", "protocol": "P", "runs": [{"seed": seed}]}
        merged = _common.save_runs(args, "s", result, ("seed",), lambda r: f"{len(r['runs'])} runs")
    assert merged == json.loads(args.json.read_text())
    assert [r["command"] for r in merged["runs"]] == ["run 1", "run 0"]  # seed 0 measured again replaces the first
    assert "<!-- s:start -->\n2 runs\n<!-- s:end -->" in args.markdown.read_text()
    args.no_markdown = True
    _common.save_runs(args, "t", {"command": "c", "protocol": "P", "runs": []}, ("seed",), str)
    assert "t:start" not in args.markdown.read_text()


def test_data_dir_missing_names_the_folder(tmp_path, capsys):
    assert not _common.data_dir_missing(argparse.Namespace(data_dir=tmp_path))
    assert _common.data_dir_missing(argparse.Namespace(data_dir=tmp_path / "nope"))
    assert f"`--data-dir` does not exist: {tmp_path / 'nope'}" in capsys.readouterr().err


def _dice_row(fold, seed, last, best):
    return {"fold": fold, "seed": seed, "last": {"dice": last}, "best": {"dice": best}}


def test_spread_gives_mean_sample_sd_and_range_over_the_named_field():
    runs = [_dice_row(f, 0, last, last + 0.02) for f, last in enumerate([0.70, 0.74, 0.78])]
    text = _common.spread(runs, "fold")
    assert text.startswith("folds 0, 1, 2): ")
    assert "last-epoch Dice 0.740 +- 0.040 (range 0.700-0.780)" in text  # sd with ddof=1: sqrt(0.0032/2)
    assert "best Dice 0.760 +- 0.040 (range 0.720-0.800)" in text
    assert _common.spread(runs[:2]).startswith("seeds 0, 0): ")


def test_fold_sizes_lists_each_fold_once_in_order():
    runs = [
        {"fold": 2, "train_cases": 510, "val_cases": 135},
        {"fold": 0, "train_cases": 516, "val_cases": 129},
        {"fold": 2, "train_cases": 510, "val_cases": 135},
    ]
    assert _common.fold_sizes(runs) == "fold 0: 516 training, 129 validation; fold 2: 510 training, 135 validation"


def test_mean_sd_formats_mean_and_sample_sd_and_refuses_one_value():
    assert _common.mean_sd(np.array([0.70, 0.72, 0.77])) == "0.730 +- 0.036"  # sd sqrt(0.0026 / 2)
    assert _common.mean_sd(np.array([-0.02, 0.01]), signed=True) == "-0.005 +- 0.021"
    with pytest.raises(ValueError, match="at least 2 values. Received: 1"):
        _common.mean_sd(np.array([0.7]))


def test_model_cost_counts_the_convolutions_and_every_parameter():
    """The profiler's count agrees with the convolutions' multiply-adds (plus biases, norms, activations)."""
    from train_step import conv_flops_keras

    from models.registry import build_model

    cost = _common.model_cost("unet", 32)
    unet = build_model("unet", img_size=32)
    assert cost["params"] == unet.count_params()
    convs = conv_flops_keras(unet) / 1e9
    assert convs <= cost["gflops"] <= 1.05 * convs
    lines = _common.cost_table([{"model": "unet", **cost}, {"model": "resunet"}], 32)
    assert lines[1:] == [
        "| model | parameters | GFLOPs per 32x32 image (forward) |",
        "|---|---|---|",
        f"| unet | {cost['params'] / 1e6:.2f}M | {cost['gflops']:.2f} |",
    ]
