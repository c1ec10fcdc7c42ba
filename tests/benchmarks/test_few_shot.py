"""few_shot.py: nested draws of whole patients (or groups) that never touch the held-out ones, each arm's flags,
the held-out figures, and the section."""

from __future__ import annotations

import csv
import json

import few_shot as fs
import few_shot_report
import numpy as np
import pytest

from tests.conftest import disc_mask, save_gray, save_mask, textured


def _manifest(root, patients: int = 40):
    rows = ["image,mask,label,group"]
    for p in range(patients):
        for k in range(2):
            img = save_gray(root / f"p{p}_{k}.png", textured(100 * p + k))
            save_mask(root / f"p{p}_{k}_m.png", disc_mask())
            rows.append(f"{img.name},p{p}_{k}_m.png,{('benign', 'malignant')[p % 2]},patient{p}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_draws_are_nested_whole_patients_split_four_to_one_and_never_held_out(tmp_path) -> None:
    site = _manifest(tmp_path / "site")
    docs, info = fs.site_draws(site, tmp_path / "runs", [0, 5, 10], draw=0)
    assert sorted(docs) == [5, 10] and info["unit"] == "patients"  # k = 0 trains nothing
    patient = lambda i: i.split("_")[0]  # noqa: E731
    small, big = docs[5]["folds"][0], docs[10]["folds"][0]
    for fold, k in ((small, 5), (big, 10)):
        train, val = {patient(i) for i in fold["train"]}, {patient(i) for i in fold["val"]}
        assert len(train | val) == k and not train & val and len(val) == k // 5  # every fifth patient validates
        assert not (set(fold["train"]) | set(fold["val"])) & set(info["held"])  # the held-out cases stay out
    assert set(small["train"]) | set(small["val"]) <= set(big["train"]) | set(big["val"])  # nested
    assert fs.site_draws(site, tmp_path / "runs", [5], draw=0)[0][5] == docs[5]  # a draw is its seed
    assert fs.site_draws(site, tmp_path / "runs", [5], draw=1)[0][5] != docs[5]
    with pytest.raises(ValueError, match="patients asked"):
        fs.site_draws(site, tmp_path / "runs", [500], draw=0)


def test_a_folder_site_counts_images_in_whole_duplicate_groups(make_busi, tmp_path) -> None:
    busi = make_busi(per_class=12)
    docs, info = fs.site_draws(busi, tmp_path / "runs", [8], draw=0)
    fold = docs[8]["folds"][0]
    assert info["unit"] == "images" and len(fold["train"]) + len(fold["val"]) >= 8 and fold["val"]


def test_each_arm_trains_the_source_architecture_its_own_way(tmp_path) -> None:
    run = tmp_path / "src"
    (run / "weights").mkdir(parents=True)
    (run / "weights" / "best.keras").write_bytes(b"")
    (run / "config.json").write_text(json.dumps({"task": "seg", "model": "unet", "img_size": 96, "base_filters": 8}))
    assert fs.arm_flags("adapt", run) == ["--adapt", str(run)]
    assert fs.arm_flags("adapt-lowlr", run)[-4:] == ["--freeze-epochs", "0", "--lr", "1e-4"]
    assert all(fs.arm_flags(arm, run)[:2] == ["--adapt", str(run)] for arm in fs.ARMS if arm.startswith("adapt"))
    scratch = fs.arm_flags("scratch", run)
    assert scratch[-2:] == ["--weights", "none"] and "--base-filters" in scratch and "--depth" not in scratch
    assert fs.arm_flags("finetune", run)[-1] == str(run / "weights" / "best.keras")


def test_the_figures_are_of_the_held_out_cases_only(tmp_path) -> None:
    # a joint run scored on the site, laid out as evaluate.py writes it: metrics.json with its "seg" and "cls"
    # parts, the classifier's predictions in cls/
    run = tmp_path / "joint"
    (run / "weights").mkdir(parents=True)
    (run / "weights" / "best.keras").write_bytes(b"")
    (run / "config.json").write_text(json.dumps({"task": "joint", "model": "unet", "img_size": 32}))
    out = run / "eval" / "site-all"
    (out / "cls").mkdir(parents=True)
    per_image = [
        {"id": "x0", "label": "benign", "dice": 0.8, "empty": False},
        {"id": "x2", "label": "malignant", "dice": 0.0, "empty": True},
        {"id": "x4", "label": "normal", "dice": 1.0, "empty": True},
        {"id": "x5", "label": "normal", "dice": 0.0, "empty": False},
        {"id": "x9", "label": "benign", "dice": 0.1, "empty": False},  # trained on: not scored
    ]
    (out / "metrics.json").write_text(
        json.dumps({"seg": {"per_image": per_image}, "cls": {"malignancy_threshold": 0.35}})
    )
    with open(out / "cls" / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "label", "prob_normal", "prob_benign", "prob_malignant"])
        for i, (label, p) in enumerate([("benign", 0.2), ("benign", 0.4), ("malignant", 0.7), ("malignant", 0.3)]):
            w.writerow([f"x{i}", label, 0.0, 1 - p, p])
        w.writerow(["x9", "malignant", 0.0, 0.9, 0.1])  # trained on
        w.writerow(["x4", "normal", 0.6, 0.3, 0.1])  # called normal
        w.writerow(["x5", "normal", 0.2, 0.5, 0.3])
        w.writerow(["x6", "benign", 0.5, 0.4, 0.1])  # a lesion called normal
        w.writerow(["x8", "normal", 0.9, 0.1, 0.0])  # trained on
        w.writerow(["x7", "benign", 0.0, 0.95, 0.05])  # trained on
    info = {"held": [f"x{i}" for i in range(7)], "groups": {f"x{i}": f"x{i}" for i in range(10)}}
    got = fs.score(run, tmp_path / "site", info)
    assert got["lesion_dice"] == pytest.approx(0.4) and got["lesion_missed"] == 0.5 and got["normal_empty"] == 0.5
    assert got["held_out_images"] == 4 and got["lesion_missed_ci95"][0] < 0.5 < got["lesion_missed_ci95"][1]
    assert got["malignant_auc"] == pytest.approx(5 / 6) and got["sensitivity"] == 0.5 and got["specificity"] == 2 / 3
    assert (
        got["normal_called_normal"] == 0.5
        and got["normal_called_normal_ci95"][0] < 0.5 < got["normal_called_normal_ci95"][1]
    )
    assert got["lesion_called_normal"] == pytest.approx(1 / 5) and got["cut"] == 0.35
    # refit-cut: the same answers at a cut chosen again on the adaptation images (the held-out ones never)
    refit = fs.score(run, tmp_path / "site", info, refit_on={"x7", "x8", "x9"})
    assert refit["cut"] == pytest.approx(0.075)  # 90% sensitivity: between x9 (malignant, 0.1) and x7 (benign, 0.05)
    assert refit["sensitivity"] == 1.0 and refit["specificity"] == 0.0  # every held-out lesion is above 0.075
    assert refit["malignant_auc"] == got["malignant_auc"]
    no_benign = fs.score(run, tmp_path / "site", info, refit_on={"x8", "x9"})
    assert no_benign["cut"] is None and "sensitivity" not in no_benign


def test_the_section_averages_the_draws_and_lists_each_with_its_rules(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(few_shot_report, "PLOTS", tmp_path)
    base = {"task": "seg", "source": "bra", "site": "busi", "unit": "images", "train_images": 16, "commit": "abc"}
    runs = [
        {**base, "arm": "unadapted", "k": 0, "draw": 0, "train_images": 0, "lesion_missed": 0.01, "normal_empty": 0.04},
        {**base, "arm": "adapt", "k": 20, "draw": 0, "lesion_missed": 0.02, "lesion_missed_ci95": [0.01, 0.05],
         "normal_empty": 0.5, "rules": {"lesion_gate": "validation fold and the source run's"}},
        {**base, "arm": "adapt", "k": 20, "draw": 1, "lesion_missed": 0.04, "normal_empty": 0.7},
        {**base, "task": "cls", "arm": "adapt", "k": 20, "draw": 0, "sensitivity": 0.9, "normal_called_normal": 0.6},
    ]  # fmt: skip
    rows = fs.summary(runs)
    adapt = next(r for r in rows if r["arm"] == "adapt" and r["task"] == "seg")
    assert adapt["draws"] == 2 and adapt["lesion_missed"] == pytest.approx((0.03, 0.02, 0.04))
    result = {"commands": ["c"], "cpu": {"model": "AMD EPYC", "cores": 2}, "date": "2026-12-06", "protocol": "P.",
              "runs": runs}  # fmt: skip
    text = fs.markdown(result)
    seg, cls = text.split("### seg")[1].split("### cls")
    assert "| bra | busi | 20 | adapt | 2 | 16 | 0.030 (0.020–0.040) | 0.600 (0.500–0.700) |" in seg
    assert "| bra | busi | 20 | adapt | 1 | 16 | 0.900 | 0.600 |" in cls  # each task its own columns
    assert "sensitivity" not in seg and "lesion images missed" not in cls
    missed = tmp_path / "adaptation-seg-bra-busi-lesion_missed.png"
    assert f"![seg: lesion images missed, bra on busi]({missed})" in text
    assert "0.020 [0.01, 0.05]" in seg and "lesion_gate: validation fold and the source run's" in seg
    paths = fs.plot(result)
    assert {p.name for p in paths} == {
        "adaptation-seg-bra-busi-lesion_missed.png",
        "adaptation-seg-bra-busi-normal_empty.png",
        "adaptation-cls-bra-busi-sensitivity.png",
        "adaptation-cls-bra-busi-normal_called_normal.png",
    }
    assert all(p.stat().st_size > 0 for p in paths) and np.isfinite(adapt["train_images"])
