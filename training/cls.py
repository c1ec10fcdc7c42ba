"""Classification's part of training: the model, its loss, metrics and phases (scoring: :mod:`evaluation.cls`)."""

from __future__ import annotations

import keras

from config.train import TrainConfig
from core.classes import CLASS_NAMES
from core.errors import OptionError
from losses.classification import get_cls_loss
from metrics.classification import cls_metrics
from models.hub import is_preset
from models.registry import architecture_options, build_model, get_model_entry, model_names
from training.task import Phase, TaskSpec, pretrained_phases


def build_cls_model(cfg: TrainConfig) -> keras.Model:
    """Build ``cfg.model`` for classification; a segmentation model name, or an architecture option the model
    does not have (:func:`models.registry.architecture_options`), raises."""
    if get_model_entry(cfg.model).task != "cls":
        raise OptionError(
            f"`--model` must be a classifier {model_names('cls')} for --task cls. Received: model={cfg.model!r}"
        )
    return build_model(
        cfg.model,
        img_size=cfg.img_size,
        channels=cfg.channels,
        num_classes=len(CLASS_NAMES),
        dropout=cfg.dropout,
        weights=cfg.weights,
        input_norm=cfg.input_norm,
        **architecture_options(cfg.model, cfg.architecture()),
    )


def cls_phases(cfg: TrainConfig) -> list[Phase]:
    """With ImageNet or keras-hub preset weights, :func:`training.task.pretrained_phases`; else one phase.

    The backbone's batch norm keeps ImageNet's statistics in every phase
    (:class:`models.classifier.FrozenBatchNormalization`), so small batches do not overwrite them.
    """
    return pretrained_phases(cfg, cfg.weights == "imagenet" or is_preset(cfg.weights))


CLS_SPEC = TaskSpec(
    monitor="val_f1",
    mode="max",
    build_model=build_cls_model,
    loss=lambda cfg, records: get_cls_loss(cfg.loss, [r.label for r in records], cfg.gamma, cfg.label_smoothing),
    metrics=lambda cfg: cls_metrics(len(CLASS_NAMES)),
    phases=cls_phases,
)
