"""`python -m data inspect|check|synth`: outputs, clear errors, nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.__main__ import main
from tests.conftest import REPO, disc_mask, save_gray, save_mask, textured


def _truncate(root: Path) -> str:
    p = root / "benign" / "benign (2).png"
    p.write_bytes(p.read_bytes()[:50])
    return "benign (2).png"


def _mask_size(root: Path) -> str:
    save_mask(root / "malignant" / "malignant (1)_mask.png", np.ones((5, 7), bool))
    return "malignant (1)_mask.png"


def _orphan_mask(root: Path) -> str:
    save_mask(root / "benign" / "benign (77)_mask.png", disc_mask())
    return "benign (77)_mask.png"


def _unknown_class(root: Path) -> str:
    save_gray(root / "birads4" / "x.png", textured(3))
    return "birads4"


def _duplicate_id(root: Path) -> str:
    save_gray(root / "normal" / "benign (1).png", textured(4))
    return "benign (1)"


def _empty(root: Path) -> str:
    for p in sorted(root.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    root.mkdir(exist_ok=True)
    return str(root.name)


BAD_INPUTS: dict[str, Callable[[Path], str]] = {
    "truncated_image": _truncate,
    "mask_size_mismatch": _mask_size,
    "mask_without_image": _orphan_mask,
    "unknown_class_folder": _unknown_class,
    "duplicate_id": _duplicate_id,
    "empty_dataset": _empty,
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_names_the_file_and_writes_nothing(name, make_busi, tmp_path, capsys) -> None:
    root = make_busi(per_class=3)
    culprit = BAD_INPUTS[name](root)
    out = tmp_path / "out"
    code = main(["inspect", "--data-dir", str(root), "--out", str(out), "--folds", "2"])
    err = capsys.readouterr().err
    assert code == 2
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert error_lines and culprit in err
    assert "Traceback" not in err
    assert not out.exists()


def test_manifest_missing_file_names_it(tmp_path, capsys) -> None:
    save_gray(tmp_path / "a.png", textured(1))
    (tmp_path / "m.csv").write_text("image,label\na.png,benign\nmissing.png,normal\n")
    code = main(["inspect", "--data-dir", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "missing.png" in err and "row 3" in err
    assert not (tmp_path / "o").exists()


def test_process_exits_2_without_traceback(make_busi, tmp_path) -> None:
    root = make_busi(per_class=2)
    _truncate(root)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "data",
            "inspect",
            "--data-dir",
            str(root),
            "--out",
            str(tmp_path / "o"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "benign (2).png" in proc.stderr and "Traceback" not in proc.stderr


def test_inspect_writes_stats_schema_report_and_splits(make_busi, tmp_path, capsys) -> None:
    root = make_busi(per_class=5)
    out = tmp_path / "out"
    assert main(["inspect", "--data-dir", str(root), "--out", str(out), "--folds", "3", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    for name in ("stats.csv", "schema.json", "splits.json", "report.json"):
        assert (out / name).is_file() and str(out / name) in printed
    splits = json.loads((out / "splits.json").read_text())
    assert splits["seed"] == 1 and len(splits["folds"]) == 3
    report = json.loads((out / "report.json").read_text())
    assert report["num_cases"] == 15 and report["classes"]["benign"]["mask_files"] == 5
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind
    # A second run reuses the splits and says so.
    assert main(["inspect", "--data-dir", str(root), "--out", str(out), "--folds", "3", "--seed", "1"]) == 0
    assert "reused" in capsys.readouterr().out


def test_check_exit_status_and_anomaly_file(make_busi, tmp_path, capsys) -> None:
    root = make_busi(per_class=4)
    out = tmp_path / "out"
    main(["inspect", "--data-dir", str(root), "--out", str(out), "--folds", "2"])
    schema = str(out / "schema.json")
    assert main(["check", "--data-dir", str(root), "--schema", schema]) == 0
    assert "No anomalies" in capsys.readouterr().out
    site = tmp_path / "site"
    for label in ("benign", "malignant"):
        save_gray(site / label / f"{label}.png", textured(9, 80, 80))
    assert (
        main(
            [
                "check",
                "--data-dir",
                str(site),
                "--schema",
                schema,
                "--out",
                str(tmp_path / "a.json"),
            ]
        )
        == 1
    )
    anomalies = json.loads((tmp_path / "a.json").read_text())["anomalies"]
    assert {a["field"] for a in anomalies} >= {"width", "height", "label"}


def test_check_missing_schema_is_a_clear_error(make_busi, tmp_path, capsys) -> None:
    root = make_busi(per_class=1)
    assert main(["check", "--data-dir", str(root), "--schema", str(tmp_path / "no.json")]) == 2
    assert "no.json" in capsys.readouterr().err


def test_synth_command(tmp_path, capsys) -> None:
    out = tmp_path / "s"
    assert main(["synth", "--out", str(out), "--per-class", "2", "--size", "64", "--seed", "3"]) == 0
    assert len(list((out / "malignant").glob("malignant (?).png"))) == 2
    assert main(["synth", "--out", str(out), "--per-class", "2"]) == 2
    assert "new or empty folder" in capsys.readouterr().err


@pytest.mark.slow
def test_default_inspect_runs_on_built_in_data(tmp_path) -> None:
    env = {**os.environ, "BUSI_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "data", "inspect"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Using the built-in synthetic data" in proc.stdout
    assert "300 cases" in proc.stdout
    out = next((tmp_path / "runs" / "data").iterdir())
    assert (out / "splits.json").is_file()


def test_inspect_and_check_report_per_site(make_busi, tmp_path, capsys) -> None:
    a = make_busi(per_class=3, name="siteA", seed=0)
    b = make_busi(per_class=3, name="siteB", seed=4)
    out = tmp_path / "out"
    assert main(["inspect", "--data-dir", str(a), f"bee={b}", "--out", str(out), "--folds", "2"]) == 0
    text = capsys.readouterr().out
    assert "siteA " in text and "bee " in text and "stratified by class+site" in text
    report = json.loads((out / "report.json").read_text())
    assert report["sites"]["bee"] == {"total": 9, "normal": 3, "benign": 3, "malignant": 3}
    assert "sites" in report["splits"]["folds"][0]["val"]
    main(["inspect", "--data-dir", str(a), "--out", str(tmp_path / "ref_out"), "--folds", "2"])
    capsys.readouterr()
    tinted = tmp_path / "tinted"  # site A's frames through a sepia colour map
    for src in a.rglob("*.png"):
        dst = tinted / src.relative_to(a)
        dst.parent.mkdir(parents=True, exist_ok=True)
        g = np.asarray(Image.open(src))
        Image.fromarray(g if "_mask" in src.name else np.stack([g, g * 0.8, g * 0.55], -1).astype(np.uint8)).save(dst)
    status = main(
        ["check", "--data-dir", str(a), str(tinted), "--schema", str(tmp_path / "ref_out" / "schema.json"),
         "--out", str(tmp_path / "check.json")]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert status == 1
    assert "No anomalies: site siteA (9 cases) matches the schema." in text, text
    assert "site tinted (9 cases):" in text and "[shift] colour_fraction" in text
    by_site = json.loads((tmp_path / "check.json").read_text())["sites"]
    assert by_site["siteA"] == [] and "shift" in {a["kind"] for a in by_site["tinted"]}
