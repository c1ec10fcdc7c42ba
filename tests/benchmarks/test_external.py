"""external.py: BUS-BRA's scanner manifest, each direction's flags, and the section it writes."""

from __future__ import annotations

import csv
from pathlib import Path

import external as ex
import pytest

from data.sources import discover_sources, parse_sources
from tests.conftest import disc_mask, save_gray, save_mask, textured


def _fake_busbra(root: Path) -> Path:
    for k, side in enumerate(("l", "r", "s")):
        save_gray(root / "Images" / f"bus_000{k + 1}-{side}.png", textured(k))
        save_mask(root / "Masks" / f"mask_000{k + 1}-{side}.png", disc_mask())
    (root / "manifest.csv").write_text(
        "image,mask,label,group\n"
        "Images/bus_0001-l.png,Masks/mask_0001-l.png,malignant,patient1\n"
        "Images/bus_0002-r.png,Masks/mask_0002-r.png,benign,patient2\n"
        "Images/bus_0003-s.png,Masks/mask_0003-s.png,benign,patient2\n"
    )
    (root / "bus_data.csv").write_text(
        "ID,Case,Histology,Pathology,BIRADS,Device,Width,Height,Side,BBOX\n"
        'bus_0001-l,1,idc,malignant,4,GE Logiq 7 @10-14MHz,64,48,left,"[1,2,3,4]"\n'
        'bus_0002-r,2,fa,benign,3,Toshiba Aplio 300 @7-18MHz,64,48,right,"[1,2,3,4]"\n'
        'bus_0003-s,2,fa,benign,3,U-Systems,64,48,right,"[1,2,3,4]"\n'
    )
    return root


def test_busbra_manifest_adds_each_images_scanner(tmp_path) -> None:
    source = _fake_busbra(tmp_path / "BUS-BRA")
    path = ex.busbra_manifest(tmp_path / "runs", source)
    assert path == tmp_path / "runs" / "BUS-BRA" / "manifest.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["id"], r["device"], r["group"]) for r in rows] == [
        ("bus_0001-l", "GE Logiq 7", "patient1"),
        ("bus_0002-r", "Toshiba Aplio 300", "patient2"),
        ("bus_0003-s", "U-Systems", "patient2"),
    ]
    cases = discover_sources(parse_sources([path]))  # a valid manifest, named by its folder
    assert cases["bus_0002-r"].site == "BUS-BRA" and cases["bus_0002-r"].device == "Toshiba Aplio 300"
    before = path.stat().st_mtime_ns
    ex.busbra_manifest(tmp_path / "runs", source)
    assert path.stat().st_mtime_ns == before  # unchanged content is not rewritten under parallel readers
    with pytest.raises(FileNotFoundError, match="bus_data.csv"):
        (source / "bus_data.csv").unlink()
        ex.busbra_manifest(tmp_path / "runs2", source)


def test_each_direction_trains_at_one_site_and_scores_the_other() -> None:
    data = {"busi": Path("/d/BUSI"), "busbra": Path("/r/BUS-BRA/manifest.csv")}
    assert ex.train_flags("seg", "busi", data) == [
        "--data-dir", "/d/BUSI", "--external", "/r/BUS-BRA/manifest.csv", "--classes", "benign", "malignant",
    ]  # fmt: skip
    assert ex.train_flags("cls", "busi", data) == ["--data-dir", "/d/BUSI", "--external", "/r/BUS-BRA/manifest.csv"]
    assert ex.train_flags("cls", "busbra", data)[:4] == [
        "--data-dir",
        "/r/BUS-BRA/manifest.csv",
        "--external",
        "/d/BUSI",
    ]
    assert ex.train_flags("cls", "busbra", data)[-3:] == ["--classes", "benign", "malignant"]


def _row(task: str, recipe: str = "baseline") -> dict:
    fig = (
        {"dice": 0.72, "dice_ci95": [0.68, 0.77], "dice_below_0.5": 0.1, "ungated_dice": 0.75}
        if task == "seg"
        else {"malignant_auc": 0.65, "malignant_auc_ci95": [0.62, 0.68], "lesion_called_normal": 0.26,
              "sensitivity": 0.11, "specificity": 0.97}
    )  # fmt: skip
    device = {"n": 139, "dice": 0.667, "below_0.5": 0.2} if task == "seg" else {"n": 139, "malignant_auc": 0.7}
    return {
        "recipe": recipe, "task": task, "direction": "busi", "fold": 0, "seed": 0, "internal": fig,
        "external": fig, "external_name": "BUS-BRA", "per_device": {"Toshiba Aplio 300": device},
        "seconds_per_epoch": 50.0, "commit": "abc1234",
    }  # fmt: skip


def test_markdown_has_both_tasks_and_each_scanner() -> None:
    result = {
        "commands": ["python benchmarks/external.py"],
        "cpu": {"model": "AMD EPYC", "cores": 2, "avx512": False},
        "date": "2026-12-02",
        "protocol": "P.",
        "runs": [_row("seg"), _row("cls")],
    }
    text = ex.markdown(result)
    assert "AMD EPYC, 2 cores, no AVX-512" in text
    assert "| busi -> BUS-BRA | baseline | 0 | 0 | 0.720 (0.680-0.770) | 0.720 (0.680-0.770) | 0.750 | 10.0% |" in text
    assert "| 0.650 (0.620-0.680) |" in text and "| 26.0% | 11.0% | 97.0% |" in text
    assert "| seg | baseline | 0 | 0 | Toshiba Aplio 300 (139) | 0.667 | 20.0% |" in text
    assert "| cls | baseline | 0 | 0 | Toshiba Aplio 300 (139) | 0.700 | - |" in text


def test_basicunet_row_bootstraps_over_patients(tmp_path) -> None:
    run = {
        "monai": "1.6.0", "train_cases": 516, "train_images": 512, "val_cases": 129,
        "history": [{"epoch": 1, "val_dice": 0.5, "train_seconds": 30.0}, {"epoch": 2, "val_dice": 0.7,
                    "train_seconds": 16.0}, {"epoch": 3, "val_dice": 0.6, "train_seconds": 16.0}],
        "external": {"name": "BUS-BRA", "ids": ["a", "b", "c", "d"], "groups": ["p1", "p1", "p2", "p3"],
                     "devices": ["GE", "GE", None, "GE"], "dice": [0.9, 0.8, 0.3, 0.6]},
    }  # fmt: skip
    path = tmp_path / "basicunet.json"
    path.write_text(__import__("json").dumps(run))
    row = ex.basicunet_row(path, "busi", 0, 0)
    assert row["internal"]["dice"] == 0.7 and row["best_epoch"] == 2  # the best validation epoch, as best.keras
    assert row["external"]["dice"] == pytest.approx(0.65) and row["external"]["dice_below_0.5"] == 0.25
    lo, hi = row["external"]["dice_ci95"]
    assert lo <= 0.65 <= hi
    assert row["per_device"]["GE"]["n"] == 3 and row["per_device"]["unknown"]["dice"] == pytest.approx(0.3)
    assert row["train_images_per_second"] == pytest.approx(32.0)  # the first epoch left out


@pytest.mark.parametrize("recipe", [r for r in ex.RECIPES if ex.RECIPES[r]])
def test_every_recipe_is_valid_train_flags(recipe: str) -> None:
    import train

    for task in ("seg", "cls") if recipe not in ex.SEG_ONLY else ("seg",):
        cfg = train.config_from_args(train.parse_args(["--task", task, *ex.RECIPES[recipe]]))
        if recipe == "image_norm":
            assert cfg.input_norm == "image"
        if recipe == "gray":
            assert cfg.channels == 1


def test_tta_recipe_needs_the_baseline_run(tmp_path) -> None:
    args = __import__("argparse").Namespace(project=tmp_path, busi=tmp_path, busbra=_fake_busbra(tmp_path / "B"))
    with pytest.raises(FileNotFoundError, match="baseline run"):
        ex.score_tta(args, "seg", "busi", 0, 0)
