"""How a joint run is scored: each head exactly as a separate segmenter and classifier are scored
(:func:`evaluation.seg.evaluate_seg`, :func:`evaluation.cls.evaluate_cls`: lesion gate, temperature,
intervals, plots) in ``seg/`` and ``cls/``, and how often the heads agree.

:func:`evaluate_joint` is the task's :class:`evaluation.base.Evaluator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import keras
import numpy as np

from config.train import TrainConfig
from core.classes import CLASS_NAMES
from evaluation.base import EvalRequest
from evaluation.cls import PREDICTIONS_NAME, evaluate_cls, read_predictions
from evaluation.cls import SUMMARY_KEYS as CLS_KEYS
from evaluation.seg import SUMMARY_KEYS as SEG_KEYS
from evaluation.seg import evaluate_seg
from models.joint import LABEL, MASK
from reports.stats import wilson_ci

SEG_DIR, CLS_DIR = "seg", "cls"
"""Sub-folders of a joint evaluation: each head's metrics, predictions and plots."""
CLASS_OUTPUT = "class_probabilities"
"""The class head's softmax layer (:func:`models.joint.joint_outputs`)."""
SUMMARY_KEYS = (*SEG_KEYS, *CLS_KEYS, "disagreement")
"""The joint figures of a run's summary line: both heads' and how often they disagree."""


def head_model(model: keras.Model, head: str) -> keras.Model:
    """The joint model's layers up to one head (``"mask"`` or ``"label"``), a model of one output."""
    layer = MASK if head == MASK else CLASS_OUTPUT
    return keras.Model(model.inputs, model.get_layer(layer).output, name=f"{model.name}_{head}")


def head_history(history: Sequence[dict[str, float]], head: str) -> list[dict[str, float]]:
    """The epoch rows as one head's: ``{head}_x`` and ``val_{head}_x`` renamed ``x`` and ``val_x``."""
    out = []
    for row in history:
        new = {"epoch": row["epoch"]} if "epoch" in row else {}
        for k, v in row.items():
            for prefix in (f"{head}_", f"val_{head}_"):
                if k.startswith(prefix):
                    new[("val_" if prefix.startswith("val_") else "") + k[len(prefix) :]] = v
        out.append(new)
    return out


def agreement(labels: Sequence[str], called: np.ndarray, empty: np.ndarray) -> dict[str, Any]:
    """How often the class head and the mask disagree on whether an image shows a lesion.

    ``called`` holds the class head's answers (class indices), ``empty`` whether each gated mask
    is empty. ``disagreement`` is the share of images called normal with a lesion in the mask,
    or called benign or malignant with an empty mask; with a Wilson 95% interval.
    """
    normal = np.asarray(called) == CLASS_NAMES.index("normal")
    empty = np.asarray(empty, dtype=bool)
    normal_with_mask, lesion_without = normal & ~empty, ~normal & empty
    n = len(labels)
    k = int((normal_with_mask | lesion_without).sum())
    return {
        "disagreement": k / n,
        "disagreement_ci95": list(wilson_ci(k, n)),
        "called_normal_with_mask": int(normal_with_mask.sum()),
        "called_lesion_with_empty_mask": int(lesion_without.sum()),
        "n": n,
    }


def _head_figures(seg: dict[str, Any], cls: dict[str, Any]) -> dict[str, Any]:
    """Each head's main figures and their intervals, for the top level of a joint result."""
    keys = SEG_KEYS + CLS_KEYS
    return {k: v for part in (seg, cls) for k, v in part.items() if k in keys or k.removesuffix("_ci95") in keys}


def evaluate_joint(model: keras.Model, cfg: TrainConfig, request: EvalRequest) -> dict[str, Any]:
    """Score both heads as a segmenter and a classifier are scored, and how often they agree.

    ``seg`` holds :func:`evaluation.seg.evaluate_seg`'s result (its plots in ``out_dir/seg/plots``),
    ``cls`` :func:`evaluation.cls.evaluate_cls`'s (``out_dir/cls``: predictions, plots, Grad-CAM of
    the class head); their main figures are repeated at the top level beside ``agreement``
    (:func:`agreement`). The request is the same for both heads (the classifier's without post-processing, and
    the images flagged against the training images once, by the mask head).
    """
    out_dir, history, records = request.out_dir, request.history, list(request.records)
    seg_request = replace(request, out_dir=out_dir / SEG_DIR, history=head_history(history, MASK))
    seg = evaluate_seg(head_model(model, MASK), cfg, seg_request)
    cls_request = replace(
        request, out_dir=out_dir / CLS_DIR, history=head_history(history, LABEL), postprocess="none", shift=False
    )
    cls = evaluate_cls(head_model(model, LABEL), cfg, cls_request)
    ids, _, probs = read_predictions(out_dir / CLS_DIR / PREDICTIONS_NAME)
    empty = {r["id"]: r["empty"] for r in seg["per_image"]}
    agree = agreement([r.label for r in records], probs.argmax(axis=1), np.array([empty[i] for i in ids]))
    result: dict[str, Any] = _head_figures(seg, cls)
    result.update(
        disagreement=agree["disagreement"],
        disagreement_ci95=agree["disagreement_ci95"],
        agreement=agree,
        n_images=len(records),
        shift=seg["shift"],
        tta=request.tta,
        postprocess=request.postprocess,
        seg=seg,
        cls=cls,
    )
    return result
