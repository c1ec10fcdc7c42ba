"""A dataset schema inferred from statistics, and a check of another dataset against it.

This does with pandas what TensorFlow Data Validation would do: TFDV cannot be
installed with TensorFlow 2.21 (its newest release pins TF 2.16, protobuf<6
and pandas<2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from core.classes import CLASS_NAMES

SCHEMA_VERSION = 2
CATEGORICAL_FIELDS = ("format", "mode", "channels", "bit_depth", "is_gray")
NUMERIC_FIELDS = (
    "width",
    "height",
    "mean_intensity",
    "std_intensity",
    "mask_area_fraction",
    "components",
    "aspect",
    "chroma",
    "colour_fraction",
    "dark_fraction",
    "speckle",
)
SHIFT_FIELDS = (
    "width",
    "height",
    "aspect",
    "mean_intensity",
    "std_intensity",
    "colour_fraction",
    "dark_fraction",
    "speckle",
)
"""Statistics whose typical value moves when the scanner or site changes (checked on the median)."""
SHIFT_QUANTILES = (0.05, 0.95)
"""A dataset has shifted on a statistic when its median lies outside the schema's 5-95% range."""
REQUIRED_COLUMNS = ("id", "label", "width", "height", "channels", "mode", "pixel_hash", "phash")
LABEL_DRIFT_MAX = 0.15
"""Largest allowed L-infinity distance between label distributions (TFDV's drift measure)."""


@dataclass(frozen=True)
class Anomaly:
    """One way a dataset departs from a schema.

    Attributes:
        field: The statistic concerned (``"width"``, ``"label"``...).
        kind: ``"out_of_range"``, ``"new_value"``, ``"missing_value"``,
            ``"missing_column"``, ``"label_drift"``, ``"shift"`` or ``"masks_missing"``.
        message: What was expected and what was found.
        case_ids: The cases concerned (empty for dataset-level anomalies).
    """

    field: str
    kind: str
    message: str
    case_ids: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Return the anomaly as a JSON-friendly dict."""
        return {
            "field": self.field,
            "kind": self.kind,
            "message": self.message,
            "count": len(self.case_ids),
            "case_ids": list(self.case_ids),
        }


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def infer_schema(stats: pd.DataFrame, has_masks: bool) -> dict[str, Any]:
    """Infer value ranges, categories and required columns from a statistics table.

    Args:
        stats: Table from :func:`data.scan.scan`.
        has_masks: Whether the dataset has mask files.

    Returns:
        A JSON-serializable schema.
    """
    counts = stats["label"].value_counts()
    total = int(counts.sum())
    return {
        "schema_version": SCHEMA_VERSION,
        "num_cases": total,
        "required_columns": list(REQUIRED_COLUMNS),
        "labels": {
            "values": [c for c in CLASS_NAMES if c in counts.index],
            "fractions": {c: round(int(counts.get(c, 0)) / total, 4) for c in CLASS_NAMES},
            "max_drift": LABEL_DRIFT_MAX,
        },
        "categorical": {
            f: sorted({_plain(v) for v in stats[f].dropna().tolist()}, key=str) for f in CATEGORICAL_FIELDS
        },
        "numeric": {
            f: {"min": _plain(stats[f].min()), "max": _plain(stats[f].max())} for f in NUMERIC_FIELDS if f in stats
        },
        "quantiles": {
            f: [round(float(stats[f].quantile(q)), 4) for q in SHIFT_QUANTILES] for f in SHIFT_FIELDS if f in stats
        },
        "has_masks": bool(has_masks),
    }


def check_schema(stats: pd.DataFrame, schema: dict[str, Any], has_masks: bool) -> list[Anomaly]:
    """List every way ``stats`` departs from ``schema``.

    Args:
        stats: Statistics table of the dataset to check.
        schema: A schema from :func:`infer_schema`.
        has_masks: Whether the dataset being checked has mask files.

    Returns:
        Anomalies, empty when the dataset conforms.
    """
    out = _column_anomalies(stats, schema) + _label_anomalies(stats, schema["labels"])
    out += _value_anomalies(stats, schema)
    out.extend(check_shift(stats, schema))
    if schema.get("has_masks") and not has_masks:
        out.append(Anomaly("masks", "masks_missing", "the schema's dataset has masks; this one has none"))
    return out


def _column_anomalies(stats: pd.DataFrame, schema: dict[str, Any]) -> list[Anomaly]:
    """Required columns that are absent, or have cases without a value."""
    out: list[Anomaly] = []
    missing = [c for c in schema.get("required_columns", []) if c not in stats.columns]
    for c in missing:
        out.append(Anomaly(c, "missing_column", f"required column {c!r} is absent"))
    for c in schema.get("required_columns", []):
        if c in stats.columns and stats[c].isna().any():
            ids = tuple(stats.loc[stats[c].isna(), "id"])
            out.append(Anomaly(c, "missing_value", f"{len(ids)} cases have no {c}", ids))
    return out


def _label_anomalies(stats: pd.DataFrame, labels: dict[str, Any]) -> list[Anomaly]:
    """Labels the schema does not know, labels with no case, and a label distribution that moved too far."""
    out: list[Anomaly] = []
    allowed = set(labels["values"])
    new = stats[~stats["label"].isin(allowed)]
    for label, part in new.groupby("label"):
        out.append(
            Anomaly(
                "label",
                "new_value",
                f"label {label!r} is not in the schema's labels {sorted(allowed)}",
                tuple(part["id"]),
            )
        )
    present = set(stats["label"])
    for label in sorted(allowed - present):
        out.append(Anomaly("label", "missing_value", f"label {label!r} has no case"))
    if len(stats):
        frac = stats["label"].value_counts(normalize=True)
        drift = max(abs(float(frac.get(c, 0.0)) - labels["fractions"].get(c, 0.0)) for c in CLASS_NAMES)
        if drift > labels["max_drift"]:
            out.append(
                Anomaly(
                    "label",
                    "label_drift",
                    f"label distribution moved by {drift:.3f} (L-infinity) > "
                    f"{labels['max_drift']}: expected {labels['fractions']}, found "
                    f"{ {c: round(float(frac.get(c, 0.0)), 4) for c in CLASS_NAMES} }",
                )
            )
    return out


def _value_anomalies(stats: pd.DataFrame, schema: dict[str, Any]) -> list[Anomaly]:
    """Categorical values the schema has not seen, and numbers outside its ranges."""
    out: list[Anomaly] = []
    for f, values in schema["categorical"].items():
        if f not in stats.columns:
            continue
        allowed_v = {str(v) for v in values}
        bad = stats[~stats[f].astype(str).isin(allowed_v)]
        for value, part in bad.groupby(bad[f].astype(str)):
            out.append(
                Anomaly(
                    f,
                    "new_value",
                    f"{f}={value} not seen in the schema (expected one of {sorted(allowed_v)})",
                    tuple(part["id"]),
                )
            )
    for f, rng in schema["numeric"].items():
        if f not in stats.columns:
            continue
        col = pd.to_numeric(stats[f])
        bad = stats[(col < rng["min"]) | (col > rng["max"])]
        if len(bad):
            out.append(
                Anomaly(
                    f,
                    "out_of_range",
                    f"{len(bad)} cases have {f} outside [{rng['min']}, {rng['max']}] "
                    f"(found {_plain(col.min())}..{_plain(col.max())})",
                    tuple(bad["id"]),
                )
            )
    return out


def check_shift(stats: pd.DataFrame, schema: dict[str, Any]) -> list[Anomaly]:
    """Acquisition shifts: each statistic whose median over ``stats`` leaves the schema's 5-95% range.

    Per-image ranges miss a whole site of colour-tinted frames when the reference holds a few
    colour overlays; the median of ``colour_fraction`` does not. The cases listed are those outside
    the range. Schemas written before version 2 have no quantiles and are not checked for shift.
    """
    out: list[Anomaly] = []
    for f, (lo, hi) in schema.get("quantiles", {}).items():
        if f not in stats.columns or not len(stats):
            continue
        col = pd.to_numeric(stats[f])
        median = float(col.median())
        if lo <= median <= hi:
            continue
        bad = stats[(col < lo) | (col > hi)]
        out.append(
            Anomaly(
                f,
                "shift",
                f"median {f} {median:.4g} is outside the reference's 5-95% range [{lo:.4g}, {hi:.4g}]; "
                f"{len(bad)} of {len(stats)} cases lie outside it",
                tuple(bad["id"]),
            )
        )
    return out
