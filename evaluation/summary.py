"""Summaries of scored runs: the one-line figures a command prints, and the cross-validation summary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from reports.stats import bootstrap_ci


def cv_summary(results: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """Mean, standard deviation and 95% bootstrap CI over folds of each metric."""
    out: dict[str, Any] = {"folds": len(results)}
    for k in keys:
        if any(r.get(k) is None for r in results):  # e.g. normal images' share on folds without normals
            continue
        vals = np.array([r[k] for r in results], dtype=float)
        lo, hi = bootstrap_ci(vals)
        out[k] = {
            "mean": float(vals.mean()),
            "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
            "ci95": [lo, hi],
            "per_fold": vals.tolist(),
        }
    return out


def format_metrics(result: dict[str, Any], keys: Sequence[str]) -> str:
    """One line of the main metrics, with CIs when present, and the warning of a result resting on few cases."""
    parts = []
    for k in keys:
        v = result.get(k)
        if isinstance(v, dict):
            parts.append(f"{k} {v['mean']:.4f} +- {v['std']:.4f} (95% CI {v['ci95'][0]:.4f}-{v['ci95'][1]:.4f})")
        elif isinstance(v, float) and not math.isnan(v):
            ci = result.get(f"{k}_ci95")
            parts.append(f"{k} {v:.4f}" + (f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""))
    line = ", ".join(parts)
    return f"{line}; {result['few_cases']}" if result.get("few_cases") else line
