"""Segmentation's part of training: the model, its loss and metrics (scoring: :mod:`evaluation.seg`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

import keras

from config.train import TrainConfig
from core.errors import OptionError, UserError
from losses.segmentation import get_seg_loss
from metrics.segmentation import seg_metrics
from models.classifier import WEIGHTS_CHOICES, check_weights, load_weights_file
from models.registry import architecture_options, build_model, get_model_entry, model_names
from training.task import Phase, TaskSpec, pretrained_phases


def reject_depth(cfg: TrainConfig) -> None:
    """An ImageNet-encoder segmenter has its encoder's depth: a changed ``--depth`` raises rather than being ignored."""
    if cfg.depth != next(f.default for f in fields(TrainConfig) if f.name == "depth"):
        raise OptionError(f"--depth sets the U-Net's levels; --model {cfg.model} has its encoder's (drop --depth)")


def imagenet_options(cfg: TrainConfig) -> dict:
    """Builder arguments of a segmenter with an ImageNet encoder (``ModelEntry.imagenet``), ``weights`` included.

    Raises:
        ValueError: On a changed ``--depth`` or an architecture option the model lacks.
    """
    reject_depth(cfg)
    return dict(
        **_model_options(cfg),
        base_filters=cfg.base_filters,
        norm=cfg.norm,
        weights=cfg.weights,
        **architecture_options(cfg.model, cfg.architecture()),
    )


def with_weights_message(cfg: TrainConfig, build: Callable[[], keras.Model]) -> keras.Model:
    """Call ``build`` (a builder that loads ``cfg.weights`` itself) and say where the weights came from.

    Raises:
        ValueError: A weights file that does not fit the model, as an error naming the flag.
    """
    try:
        model = build()
    except UserError:
        raise
    except ValueError as e:
        if cfg.weights in WEIGHTS_CHOICES:
            raise
        raise OptionError(
            f"`--weights {cfg.weights}` does not fit --model {cfg.model} with these options: "
            f"train with the options of the run that wrote it ({e})"
        ) from e
    if cfg.weights not in WEIGHTS_CHOICES:
        print(f"started from the weights of {cfg.weights}")
    elif cfg.weights == "imagenet":
        print(f"encoder of --model {cfg.model} started from ImageNet")
    return model


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
    A keras-hub model (SegFormer) takes its weights itself, a keras-hub preset among them; so does a
    model with an ImageNet encoder (``efficientnet_lite0_unet``), ``imagenet`` among them.

    Raises:
        ValueError: On a classifier name, ``--weights imagenet`` for a model without an ImageNet encoder,
            a weights file of another architecture, or U-Net options for a keras-hub model.
        FileNotFoundError: If the weights file does not exist.
    """
    if get_model_entry(cfg.model).task != "seg":
        raise OptionError(
            f"`--model` must be a segmentation model {model_names('seg')} for --task seg. Received: model={cfg.model!r}"
        )
    entry = get_model_entry(cfg.model)
    if entry.hub:
        return build_model(cfg.model, **hub_options(cfg))
    if entry.imagenet:
        return with_weights_message(cfg, lambda: build_model(cfg.model, **imagenet_options(cfg)))
    if cfg.weights == "imagenet":
        raise OptionError(
            f"`--weights imagenet` needs an ImageNet encoder: for segmentation --model "
            f"{' or '.join(n for n in model_names('seg') if get_model_entry(n).imagenet)}; --model {cfg.model} "
            "takes none or a .keras / .weights.h5 file of the same model (e.g. another run's weights/best.keras)"
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


def seg_phases(cfg: TrainConfig) -> list[Phase]:
    """With ``--weights imagenet``, :func:`training.task.pretrained_phases`; else one phase."""
    return pretrained_phases(cfg, cfg.weights == "imagenet")


SEG_SPEC = TaskSpec(
    monitor="val_dice",
    mode="max",
    build_model=build_seg_model,
    loss=lambda cfg, _records: get_seg_loss(cfg.loss),
    metrics=lambda cfg: seg_metrics(),
    phases=seg_phases,
)
