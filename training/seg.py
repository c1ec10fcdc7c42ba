"""Segmentation's part of training: the model, its loss and metrics (scoring: :mod:`evaluation.seg`)."""

from __future__ import annotations

from dataclasses import fields

import keras

from config.train import TrainConfig
from core.errors import OptionError
from losses.segmentation import get_seg_loss
from metrics.segmentation import seg_metrics
from models.classifier import check_weights, load_weights_file
from models.registry import architecture_options, build_model, get_model_entry, model_names
from training.task import TaskSpec


def hub_options(cfg: TrainConfig) -> dict:
    """Builder arguments of a keras-hub segmenter (:mod:`models.hub`) from ``cfg``.

    Raises:
        ValueError: If ``cfg`` sets an option such a model does not have (``--base-filters``,
            ``--depth``, ``--norm``) or an architecture option it lacks, rather than ignoring it.
    """
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    changed = [f"--{k.replace('_', '-')}" for k in ("base_filters", "depth", "norm") if getattr(cfg, k) != defaults[k]]
    if changed:
        raise OptionError(f"{' '.join(changed)} set the U-Net's layers; --model {cfg.model} has none of them")
    return {**_model_options(cfg), "weights": cfg.weights, **architecture_options(cfg.model, cfg.architecture())}


def _model_options(cfg: TrainConfig) -> dict:
    """The builder options every segmentation model takes from the run's config."""
    return dict(
        img_size=cfg.img_size,
        channels=cfg.channels,
        dropout=cfg.dropout,
        presence_head=cfg.presence_head,
        input_norm=cfg.input_norm,
    )


def build_seg_model(cfg: TrainConfig) -> keras.Model:
    """Build ``cfg.model`` for segmentation, starting from ``cfg.weights`` when it names a file.

    A file (another run's ``weights/best.keras``, say) must hold the same architecture: model,
    ``base_filters``, ``depth``, ``norm`` and ``presence_head``; the input size may differ.
    A keras-hub model (SegFormer) takes its weights itself, a keras-hub preset among them.

    Raises:
        ValueError: On a classifier name, ``--weights imagenet`` (no segmentation model has ImageNet
            weights), a weights file of another architecture, or U-Net options for a keras-hub model.
        FileNotFoundError: If the weights file does not exist.
    """
    if get_model_entry(cfg.model).task != "seg":
        raise OptionError(
            f"`--model` must be a segmentation model {model_names('seg')} for --task seg. Received: model={cfg.model!r}"
        )
    if get_model_entry(cfg.model).hub:
        return build_model(cfg.model, **hub_options(cfg))
    if cfg.weights == "imagenet":
        raise OptionError(
            "`--weights imagenet` is for classifiers; a segmentation run takes none or a .keras / .weights.h5 "
            "file of the same model (e.g. another run's weights/best.keras)"
        )
    check_weights(cfg.weights)
    model = build_model(
        cfg.model,
        **_model_options(cfg),
        base_filters=cfg.base_filters,
        depth=cfg.depth,
        norm=cfg.norm,
        **architecture_options(cfg.model, cfg.architecture()),  # raises on an option the model lacks
    )
    if cfg.weights != "none":
        try:
            load_weights_file(model, cfg.weights)
        except ValueError as e:
            raise OptionError(
                f"`--weights {cfg.weights}` does not fit --model {cfg.model} with --base-filters "
                f"{cfg.base_filters}, --depth {cfg.depth}, --norm {cfg.norm}, presence head {cfg.presence_head}: "
                f"train with the options of the run that wrote it ({e})"
            ) from e
        print(f"started from the weights of {cfg.weights}")
    return model


SEG_SPEC = TaskSpec(
    monitor="val_dice",
    mode="max",
    build_model=build_seg_model,
    loss=lambda cfg, _records: get_seg_loss(cfg.loss),
    metrics=lambda cfg: seg_metrics(),
)
