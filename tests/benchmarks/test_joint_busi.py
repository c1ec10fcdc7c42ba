"""joint_busi.py: each model's train.py command, the paired differences and the section it writes."""

from __future__ import annotations

import argparse
from pathlib import Path

import joint_busi as jb
import pytest

import train


@pytest.mark.parametrize("model", list(jb.MODELS))
def test_each_models_command_is_a_valid_train_py_run_of_the_protocol(model: str, tmp_path: Path) -> None:
    args = argparse.Namespace(busi=tmp_path / "busi", busbra=tmp_path / "bra", project=tmp_path / "p", epochs=30)
    cmd = jb.train_cmd(args, model, 2)
    cfg = train.config_from_args(train.parse_args(cmd[2:]))
    assert (cfg.task, cfg.fold, cfg.img_size, cfg.epochs, cfg.batch_size) == (jb.MODELS[model][0], 2, 128, 30, 8)
    assert (cfg.augment, cfg.patience, cfg.schedule, cfg.export) == ("flip_rotate", 0, "cosine", False)
    # class-balanced sampling wherever a class head trains with plain cross-entropy
    assert cfg.oversample == (cfg.task != "seg" and cfg.cls_loss == "ce" and (cfg.task == "joint" or cfg.loss == "ce"))
    assert (model == "joint_balanced_loss") == (cfg.task == "joint" and cfg.cls_loss == "weighted_ce")
    assert jb.run_dir(args, model, 2) == Path(cfg.project) / cfg.task / cfg.name
    assert cfg.consistency == (1.0 if model == "joint_consistency" else 0.0)


def _row(model: str, fold: int, dice: float | None = None, f1: float | None = None) -> dict:
    task = jb.MODELS[model][0]
    row = {"model": model, "fold": fold, "seed": 0, "task": task, "train_images_per_second": 5.0, "cpu": "AMD EPYC"}
    ci = [0.1, 0.9]
    if task != "cls":
        row.update(lesion_dice=dice, lesion_dice_ci95=ci, normal_with_mask=0.5, normal_lesions=1.5,
                   normal_with_mask_largest=0.5, normal_lesions_largest=0.5, external_dice=0.7,
                   external_dice_ci95=ci)  # fmt: skip
    if task != "seg":
        row.update(macro_f1=f1, macro_f1_ci95=ci, macro_auc=0.8, macro_auc_ci95=ci, ece_before=0.12, ece=0.04,
                   ece_ci95=ci, temperature=1.5, external_auc=0.7, external_auc_ci95=ci,
                   external_called_normal=0.2)  # fmt: skip
    if task == "joint":
        row.update(disagreement=0.1, disagreement_ci95=ci)
    return row


def test_paired_differences_use_only_folds_both_models_ran() -> None:
    runs = [_row("unet", 0, dice=0.70), _row("joint", 0, dice=0.72, f1=0.6), _row("joint", 1, dice=0.8, f1=0.7),
            _row("efficientnet_b0", 1, f1=0.65)]  # fmt: skip
    folds, diff = jb.paired(runs, "joint", "unet", "lesion_dice")
    assert folds == [0] and diff.tolist() == pytest.approx([0.02])
    folds, diff = jb.paired(runs, "joint", "efficientnet_b0", "macro_f1")
    assert folds == [1] and diff.tolist() == pytest.approx([0.05])
    text = jb.markdown({"protocol": jb.PROTOCOL, "runs": runs, "commands": ["python benchmarks/joint_busi.py"]})
    assert "joint − unet, lesion Dice: mean +0.020 over folds [0]" in text
    assert "joint − efficientnet_b0, macro F1: mean +0.050 over folds [1]" in text
    assert "| joint | 0 | 0.720 (0.100-0.900) | 0.600 (0.100-0.900) |" in text
    assert "0.120 → 0.040 (0.100-0.900) (T 1.50)" in text and "50.0% (1.50) / 50.0% (0.50)" in text
