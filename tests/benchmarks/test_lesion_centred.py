"""benchmarks/lesion_centred.py's bookkeeping: the table, the fold means, and the diagnosis arm's inputs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lesion_centred as lc
import pytest


def _row(arm: str, fold: int, auc: float, ext: float, sens: float, **internal) -> dict:
    row = {"arm": arm, "img_size": 128, "fold": fold, "commit": "abc1234", "cpu": "Some CPU",
           "internal_cls": {"malignant_auc": auc, "malignant_auc_ci95": [auc - 0.05, auc + 0.05], **internal},
           "external_cls": {"malignant_auc": ext, "sensitivity": sens, "specificity": 0.5}}  # fmt: skip
    if arm != "diagnosis":
        row["train_images_per_second"] = 20.0
    return row


def test_the_table_and_the_fold_means_against_the_targets() -> None:
    runs = [_row("lesion", 0, 0.90, 0.80, 0.8), _row("lesion", 1, 0.94, 0.84, 0.9), _row("frame", 0, 0.9, 0.7, 0.3),
            _row("diagnosis", 0, 0.88, 0.79, 0.85, normal_called_normal=0.7)]  # fmt: skip
    text = lc.markdown({"protocol": "p", "runs": runs, "commands": ["python benchmarks/lesion_centred.py"]})
    assert "| lesion | 128 | 0 | 0.900 (0.850-0.950) |" in text
    assert "| diagnosis | 128 | 0 | 0.880 (0.830-0.930) | — / — | 70.0% |" in text
    assert "- lesion, 128 px, folds [0, 1]: internal AUC 0.920, BUS-BRA AUC 0.820, BUS-BRA sensitivity 0.850" in text
    assert "BUS-BRA AUC >= 0.82" in text


def test_the_diagnosis_arm_needs_its_lesion_run_and_segmenter(tmp_path) -> None:
    args = SimpleNamespace(project=tmp_path, segmenters=str(tmp_path / "seg-f{fold}"), busbra=tmp_path)
    with pytest.raises(FileNotFoundError, match="the lesion arm's run of fold 2 is not finished"):
        lc.run_one(args, "diagnosis", 128, 2)
    (tmp_path / "cls" / "lesion-128px-f2").mkdir(parents=True)
    (tmp_path / "cls" / "lesion-128px-f2" / "metrics.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="the segmenter of fold 2 is not finished: .*seg-f2"):
        lc.run_one(args, "diagnosis", 128, 2)


def test_the_command_trains_into_the_folder_the_benchmark_reads(tmp_path) -> None:
    args = SimpleNamespace(project=tmp_path, busi=tmp_path / "busi", busbra=tmp_path / "bra", epochs=20)
    cmd = lc.train_cmd(args, "lesion", 128, 1)
    flag = {f: cmd[i + 1] for i, f in enumerate(cmd[:-1]) if f.startswith("--")}
    # train.py writes <project>/<task>/<name>
    assert Path(flag["--project"]) / "cls" / flag["--name"] == lc.run_dir(args, "lesion", 128, 1)
    assert flag["--crop"] == "lesion" and flag["--weights"] == "imagenet" and flag["--fold"] == "1"
    assert "--target-sensitivity" not in cmd  # the default, 0.90
