"""few_shot.py: nested patient draws that never touch the held-out patients, the rows and the section."""

from __future__ import annotations

import json

import few_shot as fs
import pytest

from tests.conftest import disc_mask, save_gray, save_mask, textured


def _manifest(root):
    rows = ["image,mask,label,group"]
    for p in range(15):
        for k in range(2):
            img = save_gray(root / f"p{p}_{k}.png", textured(100 * p + k))
            save_mask(root / f"p{p}_{k}_m.png", disc_mask())
            rows.append(f"{img.name},p{p}_{k}_m.png,{('benign', 'malignant')[p % 2]},patient{p}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_patient_draws_are_nested_and_never_held_out(tmp_path) -> None:
    manifest = _manifest(tmp_path / "site")
    splits = fs.patient_splits(manifest, tmp_path / "runs", [2, 5], seed=0)
    small, big = splits[2]["folds"][0], splits[5]["folds"][0]
    patient = lambda i: i.split("_")[0]  # noqa: E731
    assert len({patient(i) for i in small["train"]}) == 2 and len({patient(i) for i in big["train"]}) == 5
    assert set(small["train"]) <= set(big["train"])  # nested: the 5 include the 2
    assert small["val"] == big["val"] and not ({patient(i) for i in big["train"]} & {patient(i) for i in big["val"]})
    assert all(len([i for i in small["train"] if patient(i) == p]) == 2 for p in {patient(i) for i in small["train"]})
    assert fs.patient_splits(manifest, tmp_path / "runs", [2], seed=0)[2] == splits[2]  # same seed, same draw
    with pytest.raises(ValueError, match="patients asked"):
        fs.patient_splits(manifest, tmp_path / "runs", [100], seed=0)


def test_row_reads_the_last_epoch_and_the_section_plots_it(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text("epoch,val_dice\n1,0.5\n2,0.7\n3,0.6\n")
    (run / "metrics.json").write_text(json.dumps({"train_cases": 18, "val_cases": 375}))
    row = fs.read_row(run, "finetune", 10, 0)
    assert (row["last_dice"], row["best_dice"], row["best_epoch"], row["epochs"]) == (0.6, 0.7, 2, 3)
    result = {
        "commands": ["python benchmarks/few_shot.py"], "cpu": {"model": "AMD EPYC", "cores": 2},
        "date": "2026-12-02", "protocol": "P.", "runs": [row, {**row, "arm": "scratch", "last_dice": 0.3}],
    }  # fmt: skip
    text = fs.markdown(result)
    assert "| 10 | finetune | 0 | 18 | 0.600 | 0.700 (2) |" in text and "| 10 | scratch | 0 | 18 | 0.300 |" in text
    assert fs.plot(result, tmp_path / "curve.png").stat().st_size > 0


def test_unadapted_row_scores_the_busi_model_on_the_held_out_images_only(tmp_path) -> None:
    ext = tmp_path / "src" / "external" / "BUS-BRA"
    ext.mkdir(parents=True)
    per_image = [{"id": "a", "dice_ungated": 0.9}, {"id": "b", "dice_ungated": 0.5}, {"id": "c", "dice_ungated": 0.1}]
    (ext / "metrics.json").write_text(json.dumps({"per_image": per_image}))
    row = fs.unadapted_row(tmp_path / "src", ["a", "b"], 0)  # "c" trains the other arms: not scored
    assert (row["arm"], row["patients"], row["held_out_images"]) == ("unadapted", 0, 2)
    assert row["last_dice"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="held-out images are not in"):
        fs.unadapted_row(tmp_path / "src", ["a", "zz"], 0)
    with pytest.raises(FileNotFoundError, match="score the source run on BUS-BRA"):
        fs.unadapted_row(tmp_path / "nowhere", ["a"], 0)
    result = {
        "commands": ["c"], "cpu": {"model": "AMD EPYC", "cores": 2}, "date": "2026-12-02", "protocol": "P.",
        "runs": [row, {**row, "arm": "finetune", "patients": 10, "train_images": 18, "last_dice": 0.8}],
    }  # fmt: skip
    assert "| 0 | unadapted | 0 | 0 | 0.700 |" in fs.markdown(result)
    assert fs.plot(result, tmp_path / "curve.png").stat().st_size > 0
