"""benchmarks/pretrained.py's bookkeeping: its commands, the table, the paired differences, the rows it keeps."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pretrained as pt


def _row(model: str, weights: str, fold: int, auc: float, ext: float, **extra) -> dict:
    figures = {"macro_auc": auc, "macro_auc_ci95": [auc - 0.05, auc + 0.05], "malignant_auc": auc}
    return {"task": "cls", "model": model, "weights": weights, "img_size": 128, "fold": fold, "params": 3.4e6,
            "gflops": 0.26, "train_images_per_second": 20.0, "internal_cls": figures,
            "external_cls": {"malignant_auc": ext}, "commit": "abc1234", "cpu": "Some CPU", **extra}  # fmt: skip


def test_the_command_is_train_py_with_the_arm_fold_size_and_external_site(tmp_path) -> None:
    args = SimpleNamespace(project=tmp_path, busi=tmp_path / "busi", busbra=tmp_path / "bra", epochs=20)
    cmd = pt.train_cmd(args, "seg", "efficientnet_lite0_unet", "imagenet", 96, 2)
    flags = {
        flag: cmd[i + 1] for i, flag in enumerate(cmd[:-1]) if flag.startswith("--") and not cmd[i + 1].startswith("--")
    }
    assert flags["--model"] == "efficientnet_lite0_unet" and flags["--weights"] == "imagenet"
    assert flags["--fold"] == "2" and flags["--img-size"] == "96" and flags["--external"].startswith("BUS-BRA=")
    assert flags["--name"] == "efficientnet_lite0_unet-imagenet-96px-f2" and "--exist-ok" in cmd
    assert flags["--target-sensitivity"] == "0"  # Youden's cut, as the benchmark's first rows had


def test_the_table_and_the_paired_differences() -> None:
    runs = [_row("efficientnet_lite0", "imagenet", 0, 0.90, 0.73, wall_seconds=120, load_average=1.2),
            _row("efficientnet_b0", "none", 0, 0.80, 0.68), _row("efficientnet_lite0", "imagenet", 1, 0.95, 0.72),
            _row("efficientnet_b0", "none", 1, 0.85, 0.69)]  # fmt: skip
    text = pt.markdown({"protocol": "p", "runs": runs, "commands": ["python benchmarks/pretrained.py"]})
    assert "| efficientnet_lite0 (ImageNet) | 0 | 0.900 (0.850-0.950) |" in text
    assert "| 3.40 | 0.26 | 20.0 | 2.0 | 1.2 |" in text and "| 3.40 | 0.26 | 20.0 | — | — |" in text
    assert "ImageNet minus the scratch default, macro AUC: mean +0.100 over folds [0, 1] (+0.100, +0.100)" in text
    assert "ImageNet minus the scratch default, BUS-BRA AUC: mean +0.040 over folds [0, 1] (+0.050, +0.030)" in text
    assert "its own scratch arm" not in text  # no scratch rows, no such pairs


def test_a_finished_run_keeps_what_its_training_invocation_recorded(tmp_path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"runs": [_row("efficientnet_b0", "none", 0, 0.8, 0.7, wall_seconds=99.0)]}))
    args = SimpleNamespace(json=path)
    assert pt._previous_row(args, ("cls", "efficientnet_b0", "none", 128, 0))["wall_seconds"] == 99.0
    assert pt._previous_row(args, ("cls", "efficientnet_b0", "none", 128, 1)) == {}


def test_targets_table_judges_bars_and_ceilings_and_counts_folds_ahead() -> None:
    def row(weights, fold, f1, normal):
        r = _row("efficientnet_lite0", weights, fold, 0.95, 0.70)
        r["internal_cls"]["macro_f1"] = f1
        r["external_cls"]["lesion_called_normal"] = normal
        return r

    runs = [row("imagenet", 0, 0.82, 0.04), row("none", 0, 0.70, 0.30), row("imagenet", 1, 0.80, 0.08),
            row("none", 1, 0.81, 0.02)]  # fmt: skip
    lines = pt.target_lines(runs, "cls", 128)
    by = {ln.split(" | ")[0].lstrip("| "): ln for ln in lines if ln.startswith("| ") and "---" not in ln}
    assert by["macro F1"] == "| macro F1 | >= 0.800 | 0.810 (2 folds) | 0.755 (2 folds) | — | yes | 1 of 2 |"
    assert by["BUS-BRA lesions called normal"] == (
        "| BUS-BRA lesions called normal | <= 5.00% | 6.00% (2 folds) | 16.00% (2 folds) | — | no | 1 of 2 |"
    )
    assert by["BUS-BRA m-vs-b AUC"].endswith("| no | 0 of 2 |")  # equal on both folds: not ahead
    assert not any("Dice" in ln for ln in lines)  # no segmentation targets for a classifier
