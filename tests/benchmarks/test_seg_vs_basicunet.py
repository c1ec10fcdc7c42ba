"""seg_vs_basicunet.py: which rows are paired, the paired differences, and the section written from two JSONs."""

from __future__ import annotations

import json

import pytest
import seg_vs_basicunet as svb


def _ours(fold, last, best, ips=34.0, variant="default", seed=0, **changes):
    return {
        "model": "unet", "precision": "off", "variant": variant, "depth": 4, "schedule": "constant", "seed": seed,
        "fold": fold, "last": {"epoch": 30, "dice": last}, "best": {"epoch": 20, "dice": best},
        "train_images_per_second": ips, "commit": "abc1234", **changes,
    }  # fmt: skip


def _basic(fold, last, best, ips=20.0, variant="default", seed=0):
    return {
        "fold": fold, "seed": seed, "variant": variant, "last": {"epoch": 30, "dice": last},
        "best": {"epoch": 25, "dice": best}, "train_images_per_second": ips, "commit": "def5678",
    }  # fmt: skip


def test_pairs_only_the_default_float32_unet_of_the_same_fold_seed_and_malloc():
    ours = [
        _ours(1, 0.80, 0.81),
        _ours(0, 0.70, 0.72),
        _ours(0, 0.99, 0.99, precision="bf16"),
        _ours(0, 0.99, 0.99, depth=5),
        _ours(0, 0.99, 0.99, schedule="cosine"),
        _ours(0, 0.99, 0.99, model="resunet"),
        _ours(0, 0.99, 0.99, seed=1),
        _ours(0, 0.99, 0.99, variant="no-trim"),
        _ours(2, 0.99, 0.99),  # BasicUNet has no fold 2
    ]
    basic = [_basic(0, 0.71, 0.73), _basic(1, 0.78, 0.80), _basic(0, 0.5, 0.5, seed=1), _basic(3, 0.5, 0.5)]
    got = svb.pairs(ours, basic, seed=0, variant="default")
    assert [(a["fold"], a["last"]["dice"], b["last"]["dice"]) for a, b in got] == [(0, 0.70, 0.71), (1, 0.80, 0.78)]
    assert [(a["last"]["dice"], b["last"]["dice"]) for a, b in svb.pairs(ours, basic, 1, "default")] == [(0.99, 0.5)]
    assert svb.pairs(ours, basic, 0, "no-trim") == []


def test_markdown_reports_paired_differences_over_folds():
    ours = [_ours(0, 0.70, 0.74, ips=30.0), _ours(1, 0.80, 0.80, ips=36.0), _ours(2, 0.76, 0.78, ips=33.0)]
    basic = [_basic(0, 0.72, 0.73, ips=20.0), _basic(1, 0.77, 0.80, ips=18.0), _basic(2, 0.74, 0.76, ips=22.0)]
    text = svb.markdown(ours, basic)
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows == [
        "| 0 | 0.700 | 0.720 | -0.020 | 30.0 | 20.0 |",
        "| 1 | 0.800 | 0.770 | +0.030 | 36.0 | 18.0 |",
        "| 2 | 0.760 | 0.740 | +0.020 | 33.0 | 22.0 |",
    ]
    # Differences -0.02, +0.03, +0.02: mean 0.01, sample sd sqrt(0.0014 / 2) = 0.0265.
    assert "| mean +- sd | 0.753 +- 0.050 | 0.743 +- 0.025 | +0.010 +- 0.026 | | |" in text
    # Best-epoch differences +0.01, 0.00, +0.02: mean 0.01, sd 0.01. Speed ratios 1.5, 2.0, 1.5.
    assert "Ours ends ahead on 2 of 3 folds." in text
    assert "paired difference +0.010 +- 0.010" in text
    assert "Ours trains 1.5-2.0 times as fast." in text
    assert "Seed 0, float32, default malloc" in text and "no-trim malloc" not in text


def test_markdown_gives_a_block_per_malloc_setting_and_none_without_pairs():
    ours = [_ours(0, 0.70, 0.74), _ours(1, 0.8, 0.8), _ours(0, 0.75, 0.75, variant="no-trim")]
    basic = [_basic(0, 0.72, 0.73), _basic(1, 0.77, 0.8), _basic(0, 0.74, 0.76, variant="no-trim")]
    text = svb.markdown(ours, basic)
    assert text.index("default malloc") < text.index("no-trim malloc")
    # one fold under no-trim: no mean +- sd row and no spread to report
    assert text.count("| mean +- sd |") == 1 and "nan" not in text
    assert text.count("Ours ends ahead") == 1
    assert svb.markdown(ours, [_basic(4, 0.7, 0.7)]) is None


def test_update_writes_the_section_between_its_markers_and_keeps_the_rest(tmp_path):
    seg, basic, md = tmp_path / "seg.json", tmp_path / "basic.json", tmp_path / "B.md"
    seg.write_text(json.dumps({"runs": [_ours(0, 0.70, 0.74), _ours(1, 0.8, 0.8)]}))
    basic.write_text(json.dumps({"runs": [_basic(0, 0.72, 0.73)]}))
    section = "<!-- seg_vs_basicunet:start -->\nSTALE\n<!-- seg_vs_basicunet:end -->"
    md.write_text(f"# Benchmarks\n\nbefore\n\n{section}\nafter\n")
    assert svb.update(md, seg, basic)
    text = md.read_text()
    assert "STALE" not in text and text.startswith("# Benchmarks\n\nbefore\n") and text.endswith("end -->\nafter\n")
    assert "| 0 | 0.700 | 0.720 | -0.020 |" in text and "| 1 |" not in text

    basic.write_text(json.dumps({"runs": [_basic(3, 0.72, 0.73)]}))
    assert not svb.update(md, seg, basic)
    assert md.read_text() == text
    assert not svb.update(md, seg, tmp_path / "missing.json")


def test_main_names_a_missing_results_file(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    assert svb.main(["--seg-json", str(missing), "--markdown", str(tmp_path / "B.md")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "B.md").exists()


@pytest.mark.parametrize("script", ["seg_busi", "monai_basicunet"])
def test_update_comparison_follows_either_benchmarks_no_markdown_flag(tmp_path, script, monkeypatch):
    module = __import__(script)
    calls = []
    monkeypatch.setattr(svb, "update", lambda *a: calls.append(a) or True)
    args = module.parse_args(["--no-markdown", "--markdown", str(tmp_path / "B.md")])
    svb.update_comparison(args, tmp_path / "s.json", tmp_path / "b.json")
    assert calls == []
    args = module.parse_args(["--markdown", str(tmp_path / "B.md")])
    svb.update_comparison(args, tmp_path / "s.json", tmp_path / "b.json")
    assert calls == [(tmp_path / "B.md", tmp_path / "s.json", tmp_path / "b.json")]
