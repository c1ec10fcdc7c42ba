"""Training options as one frozen dataclass of plain values, saved with every run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from data.classes import CLASS_NAMES

TASKS = ("seg", "cls", "joint")
MIXED_PRECISION = ("auto", "off", "fp16", "bf16")
STRATEGIES = ("auto", "mirrored", "multiworker")
SCHEDULES = ("cosine", "constant")
NORMS = ("instance", "batch")
INPUT_NORMS = ("fixed", "image")
"""``models.normalize.INPUT_NORMS``, here so the config does not import Keras."""
# Model and loss when --model / --loss are not given.
TASK_DEFAULTS = {
    "seg": {"model": "unet", "loss": "bce_dice"},
    "cls": {"model": "efficientnet_b0", "loss": "ce"},
    "joint": {"model": "unet", "loss": "bce_dice"},
}
LR = 1e-3
"""Adam's learning rate when --lr is not given."""
HUB_CLASSIFIERS = ("deit_tiny", "mit_b0_cls")
"""The keras-hub classifiers (the registry's hub models for ``cls``): they start at :data:`HUB_CLASSIFIER_LR`."""
HUB_CLASSIFIER_LR = 1e-4
"""Their default learning rate: from scratch on BUSI at 1e-3, MiT-B0's training loss stayed at ln 3 and
DeiT-Tiny's reached only 1.05 (BENCHMARKS.md, 'The learning rate, and what else moved the gap')."""
ARCHITECTURE = ("patch_size", "num_layers", "drop_path")
"""The architecture options (``models.registry.ARCHITECTURE_OPTIONS``, which this layer cannot import)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run.

    ``fold`` is a fold index, or -1 for every fold (``--fold all``). ``lr`` is the
    learning rate for one replica's batch; it is scaled linearly with the number
    of replicas (Goyal et al., 2017), since the global batch grows with them. None
    resolves to :data:`HUB_CLASSIFIER_LR` for a keras-hub classifier and to :data:`LR` otherwise.
    An empty ``model`` or ``loss`` takes the task's default (:data:`TASK_DEFAULTS`).
    ``weights``, ``freeze_epochs``, ``gamma`` and ``label_smoothing`` apply to
    classification only. ``oversample`` None (the default) resolves to True for plain
    cross-entropy on ``cls`` (the imbalance is handled by sampling) and to False
    otherwise (the weighted losses handle it; segmentation samples as the data come
    unless asked), so a saved config always holds the choice made. ``export`` writes each fold's best
    weights as a SavedModel (``saved_model/``) after training. ``lesion_gate`` (segmentation)
    fits the rule that leaves an image's mask empty (:mod:`training.gate`) on the validation
    fold and saves it with the run. ``presence_head`` (segmentation) adds an image-level
    lesion-presence logit to the model (:func:`models.unet.mask_output`). ``input_norm`` is how the
    model scales its input: ``"fixed"``, or ``"image"`` to standardize each image on its own
    (:mod:`models.normalize`).

    ``data_dir`` holds one source or several (each ``PATH`` or ``NAME=PATH``, a site; see
    :mod:`data.sources`); empty means the built-in synthetic data. ``holdout_site`` (``--fold
    site:NAME``) trains on every other site and validates on that one (``fold`` is then 0, the
    one fold of that split). ``external`` lists datasets each fold's best model is evaluated on
    after training (:mod:`training.external`).

    ``task="joint"`` trains one model with a lesion mask and a class (:mod:`models.joint`): ``loss``
    is then its segmentation loss, ``cls_loss`` its classification loss (``gamma`` and
    ``label_smoothing`` apply to it), weighted by ``cls_weight``; ``consistency`` weighs the penalty
    for the two heads disagreeing on whether there is a lesion (0: off). ``oversample`` None
    resolves to True when ``cls_loss`` is plain cross-entropy, as for ``cls``.

    ``patch_size``, ``num_layers`` and ``drop_path`` change the architecture of the models that have
    them (:data:`ARCHITECTURE`); None keeps the model's own.
    """

    task: str = "seg"
    model: str = ""
    data_dir: tuple[str, ...] = ()
    splits: str = ""
    fold: int = 0
    holdout_site: str = ""
    img_size: int = 128
    channels: int = 3
    epochs: int = 20
    batch_size: int = 8
    lr: float | None = None
    loss: str = ""
    augment: str = "light"
    mixed_precision: str = "auto"
    strategy: str = "auto"
    project: str = "runs"
    name: str = "exp"
    seed: int = 0
    max_samples: int = 0
    classes: tuple[str, ...] = CLASS_NAMES
    patience: int = 10
    base_filters: int = 16
    depth: int = 4
    norm: str = "instance"
    dropout: float = 0.1
    schedule: str = "cosine"
    folds: int = 5
    weights: str = "none"
    freeze_epochs: int = 3
    gamma: float = 2.0
    label_smoothing: float = 0.0
    oversample: bool | None = None
    export: bool = True
    lesion_gate: bool = True
    presence_head: bool = False
    input_norm: str = "fixed"
    external: tuple[str, ...] = ()
    cls_loss: str = "ce"
    cls_weight: float = 1.0
    consistency: float = 0.0
    patch_size: int | None = None
    num_layers: int | None = None
    drop_path: float | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"`task` must be one of {list(TASKS)}. Received: task={self.task!r}")
        for key in ("model", "loss"):
            if not getattr(self, key):
                object.__setattr__(self, key, TASK_DEFAULTS[self.task][key])
        if self.lr is None:
            hub_cls = self.task == "cls" and self.model in HUB_CLASSIFIERS
            object.__setattr__(self, "lr", HUB_CLASSIFIER_LR if hub_cls else LR)
        for key in ("data_dir", "external"):  # one string (configs before multi-site training), or a list
            value = getattr(self, key)
            items = (value,) if isinstance(value, (str, Path)) else value
            object.__setattr__(self, key, tuple(str(d) for d in items if str(d)))
        if self.holdout_site and self.fold != 0:
            raise ValueError(
                f"`--fold site:{self.holdout_site}` is one fold; it cannot be combined with fold={self.fold}"
            )
        if self.oversample is None:
            ce = self.loss == "ce" if self.task == "cls" else self.task == "joint" and self.cls_loss == "ce"
            object.__setattr__(self, "oversample", ce)
        if self.cls_weight < 0 or self.consistency < 0:
            raise ValueError(
                f"`cls_weight` and `consistency` must be >= 0. Received: {self.cls_weight}, {self.consistency}"
            )
        if self.consistency and self.task != "joint":
            raise ValueError(f"`consistency` is for --task joint. Received: task={self.task!r}")
        if self.norm not in NORMS:
            raise ValueError(f"`norm` must be one of {list(NORMS)}. Received: norm={self.norm!r}")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(
                f"`input_norm` must be one of {list(INPUT_NORMS)}. Received: input_norm={self.input_norm!r}"
            )
        if self.freeze_epochs < 0:
            raise ValueError(f"`freeze_epochs` must be >= 0. Received: freeze_epochs={self.freeze_epochs}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"`mixed_precision` must be one of {list(MIXED_PRECISION)}. "
                f"Received: mixed_precision={self.mixed_precision!r}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(f"`strategy` must be one of {list(STRATEGIES)}. Received: strategy={self.strategy!r}")
        for name in ("epochs", "batch_size", "img_size", "depth", "patch_size", "num_layers"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1. Received: {name}={getattr(self, name)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"`schedule` must be one of {list(SCHEDULES)}. Received: schedule={self.schedule!r}")
        if self.lr <= 0:
            raise ValueError(f"`lr` must be positive. Received: lr={self.lr}")
        bad = [c for c in self.classes if c not in CLASS_NAMES]
        if bad or not self.classes:
            raise ValueError(
                f"`classes` must be a non-empty subset of {list(CLASS_NAMES)}. Received: {list(self.classes)}"
            )

    def architecture(self) -> dict[str, Any]:
        """The architecture options (:data:`ARCHITECTURE`), None where unset."""
        return {k: getattr(self, k) for k in ARCHITECTURE}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values."""
        d = asdict(self)
        for key in ("classes", "data_dir", "external"):
            d[key] = list(getattr(self, key))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Rebuild a config saved by :meth:`to_dict`; unknown keys raise."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; expected some of {sorted(known)}")
        d = dict(d)
        if "classes" in d:
            d["classes"] = tuple(d["classes"])
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read ``config.json`` of a run."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
