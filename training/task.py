"""What a task contributes to training: its model, loss, metrics, phases, best-epoch rule and evaluator.

The trainer (:mod:`training.trainer`) is the same code for every task; it reads a :class:`TaskSpec`
from :func:`training.tasks.task_spec`. Each task module (:mod:`training.seg`, :mod:`training.cls`,
:mod:`training.joint`) defines its spec; scoring is :mod:`evaluation`'s (:func:`evaluation.tasks.evaluator`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras

from config.train import TrainConfig
from data.discover import Case


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs trained with one optimizer.

    Attributes:
        end_epoch: Epochs completed when the phase ends.
        lr_scale: Factor on the run's (replica-scaled) learning rate.
        backbone_trainable: Set the ``"backbone"`` layer's ``trainable`` (None: leave it).
        encoder_trainable: Set the encoder's layers but not its normalization trainable or frozen
            (:func:`models.freeze.set_encoder_trainable`; None: leave them).
    """

    end_epoch: int
    lr_scale: float = 1.0
    backbone_trainable: bool | None = None
    encoder_trainable: bool | None = None


def _single_phase(cfg: TrainConfig) -> list[Phase]:
    return [Phase(cfg.epochs)]


FINE_TUNE_LR_SCALE = 0.1
"""Second phase of fine-tuning a pretrained encoder: the unfrozen backbone trains at this fraction of --lr."""


def pretrained_phases(cfg: TrainConfig, pretrained: bool) -> list[Phase]:
    """The phases of a run whose encoder starts pretrained (``pretrained``), else one phase.

    The backbone is frozen for ``--freeze-epochs``, then every layer trains at
    :data:`FINE_TUNE_LR_SCALE` of the rate; with ``--freeze-epochs`` at least ``--epochs`` it stays
    frozen for the whole run (a linear probe and a trained head), with 0 it trains from the start.
    """
    return _frozen_then_all(cfg, "backbone_trainable") if pretrained else [Phase(cfg.epochs)]


def _frozen_then_all(cfg: TrainConfig, flag: str) -> list[Phase]:
    """Frozen (``flag`` False) for ``--freeze-epochs``, then every layer at :data:`FINE_TUNE_LR_SCALE` of the rate."""
    if cfg.freeze_epochs <= 0:
        return [Phase(cfg.epochs)]
    if cfg.freeze_epochs >= cfg.epochs:
        return [Phase(cfg.epochs, 1.0, **{flag: False})]
    return [Phase(cfg.freeze_epochs, 1.0, **{flag: False}), Phase(cfg.epochs, FINE_TUNE_LR_SCALE, **{flag: True})]


def adapt_phases(cfg: TrainConfig) -> list[Phase]:
    """An adapted run's phases (``--adapt``): the encoder frozen but its normalization training for
    ``--freeze-epochs``, then every layer at :data:`FINE_TUNE_LR_SCALE` of the rate; with ``--freeze-epochs``
    at least ``--epochs`` frozen throughout, with 0 every layer at ``--lr`` from the start."""
    return _frozen_then_all(cfg, "encoder_trainable")


@dataclass(frozen=True)
class TaskSpec:
    """What differs between tasks."""

    monitor: str
    mode: str
    build_model: Callable[[TrainConfig], keras.Model]
    loss: Callable[[TrainConfig, Sequence[Case]], keras.losses.Loss]
    metrics: Callable[[TrainConfig], list[keras.metrics.Metric]]
    phases: Callable[[TrainConfig], list[Phase]] = _single_phase
    loss_weights: Callable[[TrainConfig], dict[str, float] | None] = lambda cfg: None
    """Weights of a multi-output model's losses (``compile(loss_weights=...)``)."""
    epoch_score: Callable[[dict[str, float]], float] | None = None
    """Computes the ``monitor`` value from an epoch's logs when no metric is it (a joint model's
    combined score); :class:`EpochScore` adds it to the logs before the checkpoint reads them."""


class EpochScore(keras.callbacks.Callback):
    """Adds ``name`` = ``score(logs)`` to every epoch's logs (run before the checkpoint callback)."""

    def __init__(self, name: str, score: Callable[[dict[str, float]], float]) -> None:
        super().__init__()
        self.name, self.score = name, score

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if logs is not None:
            logs[self.name] = float(self.score(logs))
