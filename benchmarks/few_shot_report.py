"""The tables and learning curves of ``few_shot.py``'s results: one summary and one every-draw table per task,
and one curve per figure and (task, source, site)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import REPO

PLOTS = REPO / "benchmarks" / "results"
FIGURES = {
    "lesion_dice": "lesion Dice",
    "lesion_missed": "lesion images missed",
    "normal_empty": "normal images left empty",
    "malignant_auc": "malignant-vs-benign AUC",
    "sensitivity": "sensitivity at the cut",
    "specificity": "specificity at the cut",
    "lesion_called_normal": "lesion images called normal",
    "normal_called_normal": "normal images called normal",
}
TASK_FIGURES = {  # the columns of each task's tables (every figure stays in the JSON)
    "seg": ("lesion_dice", "lesion_missed", "normal_empty"),
    "cls": ("malignant_auc", "sensitivity", "specificity", "lesion_called_normal", "normal_called_normal"),
    "joint": ("lesion_dice", "lesion_missed", "normal_empty", "malignant_auc", "sensitivity", "normal_called_normal"),
}


def summary(runs: list[dict]) -> list[dict]:
    """One row per (task, source, site, arm, k): each figure's mean over the draws and its range."""
    cells: dict[tuple, list[dict]] = {}
    seen: set = set()
    for r in sorted(runs, key=lambda r: r["draw"]):
        if (which := (r["task"], r["source"], r["site"], r["arm"])) in seen and r["arm"] == "unadapted":
            continue  # the source model does not depend on the draw: scored once, at its first draw
        seen.add(which)
        cells.setdefault((r["task"], r["source"], r["site"], r["arm"], r["k"]), []).append(r)
    out = []
    for (task, source, site, arm, k), rows in sorted(cells.items(), key=lambda c: (*c[0][:3], c[0][4], c[0][3])):
        row = {"task": task, "source": source, "site": site, "arm": arm, "k": k, "draws": len(rows),
               "train_images": float(np.mean([r.get("train_images", 0) for r in rows]))}  # fmt: skip
        for key in FIGURES:
            values = [r[key] for r in rows if r.get(key) is not None]
            if values:
                row[key] = (float(np.mean(values)), float(min(values)), float(max(values)))
        out.append(row)
    return out


def _curves(result: dict) -> list[tuple[tuple[str, str, str], str, Path]]:
    """The learning curves of ``result``: ((task, source, site), figure, file), one per figure a task shows."""
    out = []
    for task, source, site in sorted({(r["task"], r["source"], r["site"]) for r in result["runs"]}):
        here = [r for r in result["runs"] if (r["task"], r["source"], r["site"]) == (task, source, site)]
        for key in TASK_FIGURES[task]:
            if any(r.get(key) is not None for r in here):
                out.append(((task, source, site), key, PLOTS / f"adaptation-{task}-{source}-{site}-{key}.png"))
    return out


def plot(result: dict) -> list[Path]:
    """One learning curve per figure and (task, source, site): the mean over draws against k, one line per arm."""
    from reports.plots import curves_plot

    rows, paths = summary(result["runs"]), []
    for which, key, path in _curves(result):
        here = [r for r in rows if (r["task"], r["source"], r["site"]) == which]
        unit = next((r.get("unit") for r in result["runs"] if r["site"] == which[2] and r.get("unit")), "images")
        series = {}
        for arm in sorted({r["arm"] for r in here} - {"unadapted"}):
            pts = sorted((r["k"], r[key][0]) for r in here if r["arm"] == arm and key in r)
            if pts:
                series[arm] = ([p[0] for p in pts], [p[1] for p in pts])
        base = [r[key][0] for r in here if r["arm"] == "unadapted" and key in r]
        if series:
            label, refs = f"{FIGURES[key]} (held out)", {"not adapted": base[0]} if base else None
            paths.append(curves_plot(series, path, f"{which[2]} {unit} adapted on", label, False, refs))
    return paths


def _cell(row: dict, key: str) -> str:
    if key not in row:
        return "—"
    mean, lo, hi = row[key]
    return f"{mean:.3f}" + (f" ({lo:.3f}–{hi:.3f})" if row["draws"] > 1 else "")


def _draw_cell(r: dict, key: str) -> str:
    ci = r.get(f"{key}_ci95")
    return "—" if r.get(key) is None else f"{r[key]:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _task_tables(result: dict, task: str) -> list[str]:
    """The summary and every-draw tables of one task, with that task's figures as columns."""
    keys = [k for k in TASK_FIGURES[task] if any(r.get(k) is not None for r in result["runs"] if r["task"] == task)]
    names = " | ".join(FIGURES[k] for k in keys)
    lines = [f"### {task}", "", f"| source | site | k | arm | draws | training images | {names} |",
             "|---|---|---|---|---|---|" + "---|" * len(keys)]  # fmt: skip
    for r in (r for r in summary(result["runs"]) if r["task"] == task):
        lines.append(f"| {r['source']} | {r['site']} | {r['k']} | {r['arm']} | {r['draws']} | "
                     f"{r['train_images']:.0f} | {' | '.join(_cell(r, k) for k in keys)} |")  # fmt: skip
    lines += ["", "Every draw, with 95% intervals, and where its rules were fitted:", "",
              f"| source | site | k | arm | draw | {names} | rules | code |",
              "|---|---|---|---|---|" + "---|" * len(keys) + "---|---|"]  # fmt: skip
    runs = sorted((r for r in result["runs"] if r["task"] == task),
                  key=lambda r: (r["source"], r["site"], r["k"], r["arm"], r["draw"]))  # fmt: skip
    for r in runs:
        rules = ", ".join(f"{k}: {v}" for k, v in r.get("rules", {}).items()) or "—"
        lines.append(f"| {r['source']} | {r['site']} | {r['k']} | {r['arm']} | {r['draw']} | "
                     f"{' | '.join(_draw_cell(r, k) for k in keys)} | {rules} | {r.get('commit', '')} |")  # fmt: skip
    return [*lines, ""]


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section: per task, the summary over draws, then every draw with its intervals."""
    cpu = result["cpu"]
    lines = [
        "## Adapting a run to a new site: learning curves over k patients (issue 41)",
        "",
        *[f"Command: `{c}`  " for c in result["commands"]],
        f"Machine: {cpu['model']}, {cpu['cores']} cores. Date: {result['date']}. {result['protocol']}",
        "",
        "Mean over draws (range over draws in brackets); held-out cases only.",
        "",
    ]
    for (task, source, site), key, path in _curves(result):
        shown = (path.relative_to(REPO) if path.is_relative_to(REPO) else path).as_posix()
        lines.append(f"![{task}: {FIGURES[key]}, {source} on {site}]({shown})")
    for task in (t for t in TASK_FIGURES if any(r["task"] == t for r in result["runs"])):
        lines += ["", *_task_tables(result, task)]
    return "\n".join(lines)
