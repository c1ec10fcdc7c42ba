"""report.html: written by training and evaluate.py, every figure and plot on it, nothing from the network."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reports.__main__ import main as reports_main
from reports.html import REPORT_FILE, figure_files, fmt, render


class Page(HTMLParser):
    """What a test reads off a page: metric rows, embedded images, figures, links, visible text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: dict[tuple[str, str], float] = {}
        self.images: list[str] = []
        self.figures: list[str] = []
        self.urls: list[str] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "tr" and "data-key" in a:
            self.rows[(a.get("data-where", ""), a["data-key"])] = float(a["data-value"])
        if tag == "img":
            self.images.append(a["src"])
        if tag == "figure":
            self.figures.append(a["data-file"])
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _page(folder: Path) -> Page:
    return Page((folder / REPORT_FILE).read_text(encoding="utf-8"))


@pytest.mark.slow
def test_training_writes_a_report_with_every_figure_plot_and_provenance(trained_runs) -> None:
    for task, run in trained_runs.items():
        page, metrics = _page(run), json.loads((run / "metrics.json").read_text())
        name = "segmentation" if task == "seg" else "classification"
        keys = ("dice", "lesion_dice", "normal_left_empty") if task == "seg" else ("macro_auc", "macro_f1", "ece")
        for key in keys:
            assert page.rows[(f"internal/{name}", key)] == metrics[key]  # the very numbers of metrics.json
        text = " ".join(page.text)
        assert fmt(metrics[keys[0]], metrics[f"{keys[0]}_ci95"]) in text
        assert "Not validated for clinical use at any site it was not scored on" in text
        origin = "random initialization" if task == "seg" else "ImageNet-trained encoder"  # cls: the default Lite0
        assert origin in text and json.loads((run / "config.json").read_text())["model"] in text
        plots = [p.relative_to(run).as_posix() for p in figure_files(run)]
        assert plots and page.figures == plots  # every plot of the run, in order
        for src, path in zip(page.images, figure_files(run), strict=True):
            assert base64.b64decode(src.split(",", 1)[1]) == path.read_bytes()  # embedded, byte for byte
        assert all(not re.match(r"[a-z]+://", u) for u in page.urls) and all(u.startswith("data:") for u in page.images)
        provenance = json.loads((run / "provenance.json").read_text())
        assert provenance["versions"]["tensorflow"] in text and provenance["cpu"] in text
        assert "seconds: evaluate" in text


@pytest.mark.slow
def test_evaluate_writes_a_report_of_its_own_data(trained_runs) -> None:
    import evaluate

    run = trained_runs["cls"]
    evaluate.main(evaluate.parse_args(["--run", str(run), "--tta"]))
    out = run / "eval" / "own-val-tta"
    page, metrics = _page(out), json.loads((out / "metrics.json").read_text())
    assert page.rows[("data/classification", "macro_f1")] == metrics["macro_f1"]
    assert page.figures == [p.relative_to(out).as_posix() for p in figure_files(out)]


@pytest.mark.slow
def test_each_external_site_gets_a_page_of_its_own(classifier_run) -> None:
    """conftest's classifier run, validated on the external manifest site ``bra`` during training."""
    site = classifier_run.run_dir / "external" / "bra"
    page, metrics = _page(site), json.loads((site / "metrics.json").read_text())
    assert page.rows[("data/classification", "malignant_auc")] == metrics["malignant_auc"]
    assert f"{metrics['data_dir']} (all)" in " ".join(page.text)  # named as the data it scored
    assert page.figures == [p.relative_to(site).as_posix() for p in figure_files(site)] and page.figures


def test_a_fold_all_summary_links_its_folds_and_the_cli_rewrites_every_page(tmp_path) -> None:
    run = tmp_path / "cv"
    for k, dice in enumerate((0.5, 0.7)):
        fold = run / f"fold{k}"
        fold.mkdir(parents=True)
        (fold / "metrics.json").write_text(json.dumps({"dice": dice, "dice_ci95": [0.4, 0.8], "fold": k}))
    (run / "config.json").write_text(json.dumps({"task": "seg", "model": "unet", "data_dir": [], "weights": "none"}))
    summary = {"folds": 2, "dice": {"mean": 0.6, "std": 0.14, "ci95": [0.4, 0.8], "per_fold": [0.5, 0.7]}}
    (run / "cv_summary.json").write_text(json.dumps(summary))
    assert reports_main(["html", str(run)]) == 0
    page = _page(run)
    assert page.rows[("", "dice")] == 0.6 and page.urls == [f"fold0/{REPORT_FILE}", f"fold1/{REPORT_FILE}"]
    assert _page(run / "fold1").rows[("internal/segmentation", "dice")] == 0.7
    assert reports_main(["html", str(tmp_path / "nothing")]) == 2


def test_the_operating_point_names_the_rule_that_chose_it(tmp_path) -> None:
    rule = "the highest cut with sensitivity >= 0.90 on the validation fold's malignant images"
    metrics = {
        "macro_f1": 0.8,
        "malignancy_threshold": 0.25,
        "sensitivity": 0.9,
        "sensitivity_ci95": [0.8, 1.0],
        "specificity": 0.6,
        "specificity_ci95": [0.5, 0.7],
        "malignancy_cut": {"threshold": 0.25, "rule": rule},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "config.json").write_text(json.dumps({"task": "cls", "model": "efficientnet_lite0"}))
    text = " ".join(Page(render(tmp_path)).text)
    assert f"P(malignant) cut 0.250 ({rule}), sensitivity {fmt(0.9, [0.8, 1.0])}" in text
    (tmp_path / "metrics.json").write_text(json.dumps({**metrics, "malignancy_threshold": None}))
    assert "Operating point" not in " ".join(Page(render(tmp_path)).text)  # no cut: no operating point


def test_a_folder_without_results_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        render(tmp_path)
