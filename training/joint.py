"""The joint task's part of training: one model, a lesion mask and a class (:mod:`models.joint`).

The mask is trained with the segmentation loss (``--loss``) on every image, normal images
with their empty mask; the class with the classification loss (``--cls-loss``) weighted by
``--cls-weight``. The best epoch is the one with the highest combined score,
:func:`combined_score`: the mean of the validation fold's per-image Dice and macro F1.
Evaluation scores each head exactly as a separate segmenter and classifier are scored
(:func:`training.seg.evaluate_seg`, :func:`training.cls.evaluate_cls`: lesion gate,
temperature, intervals, plots) in ``seg/`` and ``cls/``, and adds how often the heads agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from data.classes import CLASS_NAMES
from data.discover import Case
from losses.classification import get_cls_loss
from losses.segmentation import get_seg_loss
from metrics.classification import cls_metrics
from metrics.segmentation import seg_metrics
from models.classifier import check_weights, load_weights_file
from models.joint import LABEL, MASK
from models.registry import architecture_options, build_model, get_model_entry, model_names
from reports.stats import wilson_ci
from training.cls import CLS_SPEC, PREDICTIONS_NAME, cls_phases, evaluate_cls, read_predictions
from training.config import TrainConfig
from training.seg import SEG_SPEC, evaluate_seg, hub_options
from training.trainer import TaskSpec

SEG_DIR, CLS_DIR = "seg", "cls"
"""Sub-folders of a joint evaluation: each head's metrics, predictions and plots."""
CLASS_OUTPUT = "class_probabilities"
"""The class head's softmax layer (:func:`models.joint.joint_outputs`)."""


def build_joint_model(cfg: TrainConfig) -> keras.Model:
    """Build ``cfg.model`` as a joint model, starting from ``cfg.weights`` when it names a file.

    A keras-hub model (SegFormer) takes its weights itself, a keras-hub preset among them
    (:func:`training.seg.hub_options`).

    Raises:
        ValueError: On a model without a joint form, ``--weights imagenet`` for a model without an
            ImageNet encoder, ``--presence-head`` with a classification encoder, or a weights file
            of another architecture.
        FileNotFoundError: If the weights file does not exist.
    """
    entry = get_model_entry(cfg.model)
    if not entry.serves("joint"):
        raise ValueError(f"`--model` must be one of {model_names('joint')} for --task joint. Received: {cfg.model!r}")
    if entry.hub:
        return build_model(cfg.model, **hub_options(cfg), joint_classes=len(CLASS_NAMES), consistency=cfg.consistency)
    check_weights(cfg.weights)
    common = dict(
        img_size=cfg.img_size,
        channels=cfg.channels,
        base_filters=cfg.base_filters,
        dropout=cfg.dropout,
        norm=cfg.norm,
        input_norm=cfg.input_norm,
        joint_classes=len(CLASS_NAMES),
        consistency=cfg.consistency,
        **architecture_options(cfg.model, cfg.architecture()),  # raises on an option the model lacks
    )
    if entry.task == "joint":  # an ImageNet encoder with a decoder: takes --weights itself
        if cfg.presence_head:
            raise ValueError(f"`--presence-head` is for the U-Net and ResUNet; {cfg.model} has a class head already")
        return build_model(cfg.model, weights=cfg.weights, **common)
    if cfg.weights == "imagenet":
        raise ValueError(
            f"`--weights imagenet` needs an ImageNet encoder: --model {' or '.join(model_names('joint'))} "
            f"has one only for {[n for n in model_names('joint') if get_model_entry(n).task == 'joint']}"
        )
    model = build_model(cfg.model, depth=cfg.depth, presence_head=cfg.presence_head, **common)
    if cfg.weights != "none":
        try:
            load_weights_file(model, cfg.weights)
        except ValueError as e:
            raise ValueError(
                f"`--weights {cfg.weights}` does not fit the joint --model {cfg.model} with these options: "
                f"train with the options of the run that wrote it ({e})"
            ) from e
        print(f"started from the weights of {cfg.weights}")
    return model


def joint_loss(cfg: TrainConfig, records: Sequence[Case]) -> dict[str, keras.losses.Loss]:
    """The segmentation loss on the mask and the classification loss on the class, by output."""
    return {
        MASK: get_seg_loss(cfg.loss),
        LABEL: get_cls_loss(cfg.cls_loss, [r.label for r in records], cfg.gamma, cfg.label_smoothing),
    }


def combined_score(logs: dict[str, float]) -> float:
    """The best-epoch criterion: the mean of the validation per-image Dice and macro F1.

    Raises:
        KeyError: If the logs lack either (names say which).
    """
    need = (f"val_{MASK}_dice", f"val_{LABEL}_f1")
    missing = [k for k in need if k not in logs]
    if missing:
        raise KeyError(f"the joint score needs {missing} in the epoch logs {sorted(logs)}")
    return (float(logs[need[0]]) + float(logs[need[1]])) / 2


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


SEG_KEYS = SEG_SPEC.summary_keys
CLS_KEYS = CLS_SPEC.summary_keys


def evaluate_joint(
    model: keras.Model,
    records: Sequence[Case],
    cfg: TrainConfig,
    out_dir: Path,
    history: list[dict[str, float]],
    fold_dir: Path | None = None,
    fit: bool = False,
    own_data: bool = True,
    tta: bool = False,
    postprocess: str = "none",
) -> dict[str, Any]:
    """Score both heads as a segmenter and a classifier are scored, and how often they agree.

    ``seg`` holds :func:`training.seg.evaluate_seg`'s result (its plots in ``out_dir/seg/plots``),
    ``cls`` :func:`training.cls.evaluate_cls`'s (``out_dir/cls``: predictions, plots, Grad-CAM of
    the class head); their main figures are repeated at the top level beside ``agreement``
    (:func:`agreement`). The arguments are those of the two.
    """
    seg = evaluate_seg(
        head_model(model, MASK), records, cfg, out_dir / SEG_DIR, head_history(history, MASK),
        fold_dir, fit, own_data, tta, postprocess,
    )  # fmt: skip
    cls = evaluate_cls(
        head_model(model, LABEL), records, cfg, out_dir / CLS_DIR, head_history(history, LABEL),
        fold_dir, fit, own_data, tta,
    )  # fmt: skip
    ids, _, probs = read_predictions(out_dir / CLS_DIR / PREDICTIONS_NAME)
    empty = {r["id"]: r["empty"] for r in seg["per_image"]}
    agree = agreement([r.label for r in records], probs.argmax(axis=1), np.array([empty[i] for i in ids]))
    result: dict[str, Any] = {}
    for part in (seg, cls):
        for k, v in part.items():
            if k in SEG_KEYS + CLS_KEYS or k.removesuffix("_ci95") in SEG_KEYS + CLS_KEYS:
                result[k] = v
    result.update(
        disagreement=agree["disagreement"],
        disagreement_ci95=agree["disagreement_ci95"],
        agreement=agree,
        n_images=len(records),
        tta=tta,
        postprocess=postprocess,
        seg=seg,
        cls=cls,
    )
    return result


JOINT_SPEC = TaskSpec(
    monitor="val_score",
    mode="max",
    build_model=build_joint_model,
    loss=joint_loss,
    metrics=lambda cfg: {MASK: seg_metrics(), LABEL: cls_metrics(len(CLASS_NAMES))},
    evaluate=evaluate_joint,
    summary_keys=(*SEG_KEYS, *CLS_KEYS, "disagreement"),
    phases=cls_phases,
    loss_weights=lambda cfg: {MASK: 1.0, LABEL: cfg.cls_weight},
    epoch_score=combined_score,
)
