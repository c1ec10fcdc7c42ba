"""The joint task's part of training: one model, a lesion mask and a class (:mod:`models.joint`).

The mask is trained with the segmentation loss (``--loss``) on every image, normal images
with their empty mask; the class with the classification loss (``--cls-loss``) weighted by
``--cls-weight``. The best epoch is the one with the highest combined score,
:func:`combined_score`: the mean of the validation fold's per-image Dice and macro F1.
Scoring is :mod:`evaluation.joint`'s: each head exactly as a separate segmenter and classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from config.train import TrainConfig
from core.classes import CLASS_NAMES
from core.errors import OptionError
from data.discover import Case
from losses.classification import get_cls_loss
from losses.segmentation import get_seg_loss
from metrics.classification import cls_metrics
from metrics.segmentation import seg_metrics
from models.classifier import check_weights, load_weights_file
from models.joint import LABEL, MASK
from models.registry import architecture_options, build_model, get_model_entry, model_names
from training.cls import cls_phases
from training.seg import hub_options, reject_depth, with_weights_message
from training.task import TaskSpec


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
        raise OptionError(f"`--model` must be one of {model_names('joint')} for --task joint. Received: {cfg.model!r}")
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
    if _takes_weights(entry):  # an ImageNet encoder with a decoder: takes --weights itself
        if cfg.presence_head:
            raise OptionError(f"`--presence-head` is for the U-Net and ResUNet; {cfg.model} has a class head already")
        if entry.imagenet:
            reject_depth(cfg)
        return with_weights_message(cfg, lambda: build_model(cfg.model, weights=cfg.weights, **common))
    if cfg.weights == "imagenet":
        raise OptionError(
            f"`--weights imagenet` needs an ImageNet encoder: --model {' or '.join(model_names('joint'))} "
            f"has one only for {[n for n in model_names('joint') if _takes_weights(get_model_entry(n))]}"
        )
    model = build_model(cfg.model, depth=cfg.depth, presence_head=cfg.presence_head, **common)
    if cfg.weights != "none":
        try:
            load_weights_file(model, cfg.weights)
        except ValueError as e:
            raise OptionError(
                f"`--weights {cfg.weights}` does not fit the joint --model {cfg.model} with these options: "
                f"train with the options of the run that wrote it ({e})"
            ) from e
        print(f"started from the weights of {cfg.weights}")
    return model


def _takes_weights(entry) -> bool:
    return entry.task == "joint" or entry.imagenet


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


JOINT_SPEC = TaskSpec(
    monitor="val_score",
    mode="max",
    build_model=build_joint_model,
    loss=joint_loss,
    metrics=lambda cfg: {MASK: seg_metrics(), LABEL: cls_metrics(len(CLASS_NAMES))},
    phases=cls_phases,
    loss_weights=lambda cfg: {MASK: 1.0, LABEL: cfg.cls_weight},
    epoch_score=combined_score,
)
