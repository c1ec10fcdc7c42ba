"""Training options as one frozen dataclass of plain values, saved with every run.

Each field carries its command-line flag in its metadata (:func:`option`): the help text, the
choices, and the tasks it belongs to. :mod:`config.flags` builds ``train.py``'s parser from them,
so a new option is one field here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from core.classes import CLASS_NAMES
from core.errors import OptionError
from models.options import ARCHITECTURE_OPTIONS, INPUT_NORMS, NORMS, OFFLINE_IMAGENET
from pipeline.config import CROPS, IMG_SIZE, MAX_JITTER, PipelineConfig, check_crop

TASKS = ("seg", "cls", "joint")
MIXED_PRECISION = ("auto", "off", "fp16", "bf16")
STRATEGIES = ("auto", "mirrored", "multiworker")
SCHEDULES = ("cosine", "constant")
# Model and loss when --model / --loss are not given. The classifier is EfficientNet-Lite0 from ImageNet
# (its weights install with the project): on BUSI's three grouped folds it beat EfficientNet-B0 from scratch
# on every one (BENCHMARKS.md, 'ImageNet EfficientNet-Lite0 against scratch and the scratch defaults').
TASK_DEFAULTS = {
    "seg": {"model": "unet", "loss": "bce_dice"},
    "cls": {"model": "efficientnet_lite0", "loss": "ce"},
    "joint": {"model": "unet", "loss": "bce_dice"},
}
CPU_IMG_SIZE = {"seg": 96}
"""The default side on a CPU-only machine, where it differs: a 96-pixel U-Net trains about twice as fast
as a 128-pixel one (BENCHMARKS.md, 'The main commands')."""
LR = 1e-3
"""Adam's learning rate when --lr is not given."""
HUB_CLASSIFIERS = ("deit_tiny", "mit_b0_cls")
"""The keras-hub classifiers (the registry's hub models for ``cls``): they start at :data:`HUB_CLASSIFIER_LR`."""
HUB_CLASSIFIER_LR = 1e-4
"""Their default learning rate: from scratch on BUSI at 1e-3, MiT-B0's training loss stayed at ln 3 and
DeiT-Tiny's reached only 1.05 (BENCHMARKS.md, 'The learning rate, and what else moved the gap')."""
SEG_TASKS, CLS_TASKS = ("seg", "joint"), ("cls", "joint")
TARGET_SENSITIVITY = 0.9
"""The malignancy cut's sensitivity on the validation fold when --target-sensitivity is not given: the cut is
set as a biopsy threshold is, for the cancers it must not miss (:mod:`evaluation.cut`)."""


def default_img_size(task: str, gpu: bool) -> int:
    """The default input side: :data:`pipeline.config.IMG_SIZE`, or :data:`CPU_IMG_SIZE`'s without a GPU."""
    return IMG_SIZE if gpu else CPU_IMG_SIZE.get(task, IMG_SIZE)


def device_img_size(task: str) -> int:
    """:func:`default_img_size` on this machine (TensorFlow says whether it has a GPU)."""
    import tensorflow as tf  # late: the config itself reads and validates without TensorFlow

    return default_img_size(task, bool(tf.config.list_physical_devices("GPU")))


def option(default: Any, help: str, tasks: tuple[str, ...] = TASKS, choices: Any = None, **flag: Any) -> Any:
    """A config field with its flag: ``help``, the ``tasks`` it belongs to, ``choices`` and argparse extras.

    ``choices`` is a sequence, or ``"module:attribute"`` naming one (looked up when the parser is built,
    so that the config needs no TensorFlow). ``flag`` may hold ``cli_default`` (the flag's default when it
    differs from the field's: None for a value resolved later), ``type`` and ``no_flag`` (a field set from
    another flag).
    """
    return field(default=default, metadata={"help": help, "tasks": tasks, "choices": choices, **flag})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run.

    ``fold`` is a fold index, or -1 for every fold (``--fold all``). ``lr`` is the
    learning rate for one replica's batch; it is scaled linearly with the number
    of replicas (Goyal et al., 2017), since the global batch grows with them. None
    resolves to :data:`HUB_CLASSIFIER_LR` for a keras-hub classifier and to :data:`LR` otherwise.
    An empty ``model`` or ``loss`` takes the task's default (:data:`TASK_DEFAULTS`); empty ``weights``
    resolves to ``imagenet`` for the models of :data:`models.options.OFFLINE_IMAGENET`, else ``none``.
    ``adapt`` is a source run (:mod:`training.adapt`). ``oversample`` None (the default) resolves to True
    for plain cross-entropy on ``cls`` (the imbalance is handled by sampling) and to False otherwise (the
    weighted losses handle it; segmentation samples as the data come unless asked), so a saved config always
    holds the choice made. ``lesion_gate`` (:mod:`evaluation.gate`), ``presence_head``
    (:func:`models.unet.mask_output`) and ``input_norm`` (:mod:`models.normalize`): each field's help.

    ``data_dir`` holds one source or several (each ``PATH`` or ``NAME=PATH``, a site; see
    :mod:`data.sources`); empty means the built-in synthetic data. ``holdout_site`` (``--fold
    site:NAME``) trains on every other site and validates on that one (``fold`` is then 0, the
    one fold of that split). ``external`` lists datasets each fold's best model is evaluated on
    after training (:mod:`evaluation.external`); ``segmenter`` diagnoses them (:mod:`training.diagnosis`).

    ``task="joint"`` trains one model with a lesion mask and a class (:mod:`models.joint`): ``loss``
    is then its segmentation loss, ``cls_loss`` its classification loss (``gamma`` and
    ``label_smoothing`` apply to it), weighted by ``cls_weight``; ``consistency`` weighs the penalty
    for the two heads disagreeing on whether there is a lesion (0: off). ``oversample`` None
    resolves to True when ``cls_loss`` is plain cross-entropy, as for ``cls``.

    ``patch_size``, ``num_layers`` and ``drop_path`` change the architecture of the models that have
    them (:data:`models.options.ARCHITECTURE_OPTIONS`); None keeps the model's own.
    """

    task: str = option(
        "seg", "seg: lesion segmentation; cls: 3 classes; joint: one model with both (shared encoder)", choices=TASKS
    )
    model: str = option(
        "",
        "a model of the registry that serves --task (default: seg unet, cls efficientnet_lite0, joint unet)",
        choices="models.registry:model_names",
    )
    data_dir: tuple[str, ...] = option(
        (),
        "BUSI-layout folder or manifest .csv, or several: each is a site (NAME=PATH names it; case ids "
        "become NAME/id, folds are stratified by class and site) (default: built-in synthetic data)",
    )
    splits: str = option("", "splits JSON to use (default: the dataset's own, made once)")
    fold: int = option(
        0,
        "fold index, 'all' for cross-validation, or site:NAME to train on the other sites and "
        "validate on site NAME (leave-one-site-out) (default 0)",
        type=str,
        cli_default="0",
    )
    holdout_site: str = option("", "set by --fold site:NAME", no_flag=True)
    img_size: int = option(
        IMG_SIZE,
        f"side of the square model input (default {IMG_SIZE}; on a CPU-only machine "
        + ", ".join(f"{t}: {v}" for t, v in CPU_IMG_SIZE.items())
        + ")",
        cli_default=None,
    )
    channels: int = option(
        3, "model input channels (gray images are repeated, colour ones reduced to luma for 1)", choices=(1, 3)
    )
    epochs: int = option(20, "number of epochs")
    batch_size: int = option(8, "batch size per replica")
    lr: float | None = option(
        None,
        "learning rate for one replica's batch; scaled linearly with replicas (default 1e-3; 1e-4 for the "
        "keras-hub classifiers deit_tiny and mit_b0_cls)",
    )
    loss: str = option(
        "",
        "seg and joint: a segmentation loss (default bce_dice); cls: a classification loss (default ce, with "
        "--oversample; focal and weighted_ce weight by the training split's class frequencies)",
        choices="config.flags:loss_names",
    )
    augment: str = option("light", "augmentation preset", choices="pipeline.augment:PRESETS")
    mixed_precision: str = option(
        "auto", "auto: bf16 on GPUs >= 8.0, fp16 on older GPUs, off on CPU", choices=MIXED_PRECISION
    )
    strategy: str = option(
        "auto",
        "auto/mirrored: all local GPUs (or the CPU); "
        "multiworker: MultiWorkerMirroredStrategy over the machines in TF_CONFIG (same command on each)",
        choices=STRATEGIES,
    )
    project: str = option("runs", "root folder of runs")
    name: str = option("exp", "run name (incremented if taken)")
    seed: int = option(0, "seed of shuffling, augmentation and init")
    max_samples: int = option(0, "debug: use at most this many cases per split")
    classes: tuple[str, ...] = option(
        CLASS_NAMES, "classes to train and validate on (default all three)", choices=CLASS_NAMES
    )
    patience: int = option(10, "early-stopping patience in epochs (0: off)")
    base_filters: int = option(16, "filters of the first level", tasks=SEG_TASKS)
    depth: int = option(
        4, "U-Net/ResUNet: down-sampling steps; --img-size must be a multiple of 2**depth", tasks=SEG_TASKS
    )
    norm: str = option(
        "instance",
        "instance norm (default) or synchronized batch norm after each convolution",
        tasks=SEG_TASKS,
        choices=NORMS,
    )
    dropout: float = option(
        0.1, "seg: spatial dropout in the deepest levels; cls: dropout before the last layer; joint: both (0: off)"
    )
    schedule: str = option(
        "cosine", "learning-rate schedule: cosine decay to 5%% over the run, or constant", choices=SCHEDULES
    )
    folds: int = option(5, "folds when the dataset's splits are made (first use of a dataset; ignored when they exist)")
    weights: str = option(
        "",
        "default: imagenet for efficientnet_lite0 and efficientnet_lite0_unet, none for the other models; "
        "none (random init); imagenet: the encoder's ImageNet weights, frozen for --freeze-epochs, then all "
        "layers at lr/10 (efficientnet_lite0 and efficientnet_lite0_unet: installed with the project, no download; "
        "the other classifiers and joint efficientnet_b0_unet: keras.applications downloads them); the keras-hub "
        "models (segformer_b0/b1, mit_b0_cls, deit_tiny): a keras-hub preset name or directory for the encoder (e.g. "
        "segformer_b0_ade20k_512, deit_tiny_distilled_patch16_224_imagenet; downloads a name; cls and joint freeze "
        "as for imagenet); every task: a .keras / .weights.h5 file of the same model, e.g. another run's "
        "weights/best.keras to adapt it to a new site",
    )
    freeze_epochs: int = option(
        3,
        "with --weights imagenet (or a keras-hub preset for cls and joint) or --adapt: epochs with the encoder "
        "frozen, then all layers at lr/10; as many as --epochs: frozen throughout; 0: all layers train from the start",
    )
    adapt: str = option(
        "",
        "a run (or one fold of it) to adapt to --data-dir: its architecture and best weights, the encoder frozen "
        "for --freeze-epochs (normalization layers train), a rule this validation fold is too small for fitted with "
        "the run's own validation fold or kept from it (the run's metrics say which)",
    )
    crop: str = option(
        "frame",
        "frame: the model reads the whole image; lesion: a square around the lesion's mask (its bounding box "
        "squared, widened by --crop-margin), jittered by --crop-jitter when training, so the classifier learns "
        "benign against malignant from the lesion (normal images, which have none, are left out; every lesion "
        "image needs its mask)",
        tasks=("cls",),
        choices=CROPS,
    )
    crop_margin: float = option(0.1, "the lesion crop's margin on each side, as a share of its side", tasks=("cls",))
    crop_jitter: float = option(
        0.1,
        f"training: the lesion crop's largest shift (share of its side) and scale change (at most {MAX_JITTER:.3f})",
        tasks=("cls",),
    )
    target_sensitivity: float = option(
        TARGET_SENSITIVITY,
        "the malignancy cut on P(malignant) is the highest that keeps this share of the validation fold's "
        "malignant images (cross-fitted, saved with the run, applied by evaluate.py, predict.py and the export); "
        "0: Youden's J instead",
        tasks=CLS_TASKS,
    )
    gamma: float = option(2.0, "focal loss gamma", tasks=CLS_TASKS)
    label_smoothing: float = option(0.0, "label smoothing", tasks=CLS_TASKS)
    oversample: bool | None = option(
        None,
        "draw the classes equally often in training (cls default: on with --loss ce, off with the "
        "weighted losses; seg default: off)",
    )
    export: bool = option(True, "write each fold's best weights as a SavedModel in saved_model/ (default on)")
    lesion_gate: bool = option(
        True,
        "fit on the validation fold when a mask counts as 'no lesion' (smallest area and mean "
        "probability), save it with the run and apply it in evaluate.py, predict.py and the export (default on)",
        tasks=SEG_TASKS,
    )
    leave_out_unmasked: bool = option(
        False,
        "leave out benign and malignant images that have no mask (counted and listed in the run's "
        "unmasked.json and in each external dataset's metrics) instead of stopping with an error naming them",
        tasks=SEG_TASKS,
    )
    presence_head: bool = option(
        False,
        "U-Net/ResUNet: add an image-level lesion-presence logit to every pixel's, read from the deepest features",
        tasks=SEG_TASKS,
    )
    input_norm: str = option(
        "fixed",
        "how the model scales its input pixels: fixed (/255, or the backbone's ImageNet normalization), or "
        "image: each image standardized by its own mean and standard deviation (scanner gain and contrast)",
        choices=INPUT_NORMS,
    )
    external: tuple[str, ...] = option(
        (),
        "datasets (folders or manifests) to evaluate each fold's best model on after training: "
        "external/<dataset>/metrics.json in the run, beside the internal metrics",
    )
    segmenter: str = option(
        "",
        "with --crop lesion: a segmentation run ({fold}: each fold's) whose masks the diagnosis reads; each fold "
        "then diagnoses every image of its validation fold (fitting the diagnosis' cut) and of each --external",
        tasks=("cls",),
    )
    cls_loss: str = option(
        "ce",
        "the classification loss (default ce, with --oversample)",
        tasks=("joint",),
        choices="losses.classification:CLS_LOSSES",
    )
    cls_weight: float = option(
        1.0, "weight of the classification loss beside the segmentation loss (default 1)", tasks=("joint",)
    )
    consistency: float = option(
        0.0,
        "weight of a penalty when the class head's P(lesion) = 1 - P(normal) and the mask's "
        "lesion presence (mean of its top 0.5%% pixels) disagree (default 0: off)",
        tasks=("joint",),
    )
    patch_size: int | None = option(
        None, "deit_tiny: side of a patch in pixels (default its own, 16; --img-size must be a multiple of it)"
    )
    num_layers: int | None = option(None, "deit_tiny: transformer blocks (default its own, 12)")
    drop_path: float | None = option(
        None,
        "mit_b0_cls, segformer_b0/b1: stochastic depth rate of the last encoder block, rising linearly "
        "from 0 in the first (default 0.1)",
    )

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise OptionError(f"`task` must be one of {list(TASKS)}. Received: task={self.task!r}")
        self._resolve_defaults()
        self._check_choices()
        self._check_numbers()

    def _resolve_defaults(self) -> None:
        """Fill what depends on other fields: model, loss, weights, learning rate, oversampling; lists as tuples."""
        for key in ("model", "loss"):
            if not getattr(self, key):
                object.__setattr__(self, key, TASK_DEFAULTS[self.task][key])
        if not self.weights:
            object.__setattr__(self, "weights", "imagenet" if self.model in OFFLINE_IMAGENET else "none")
        if self.lr is None:
            hub_cls = self.task == "cls" and self.model in HUB_CLASSIFIERS
            object.__setattr__(self, "lr", HUB_CLASSIFIER_LR if hub_cls else LR)
        for key in ("data_dir", "external"):  # one string (configs before multi-site training), or a list
            value = getattr(self, key)
            items = (value,) if isinstance(value, (str, Path)) else value
            object.__setattr__(self, key, tuple(str(d) for d in items if str(d)))
        if self.crop == "lesion":  # a lesion crop needs a lesion: normal images have none
            object.__setattr__(self, "classes", tuple(c for c in self.classes if c != "normal"))
        if self.oversample is None:
            ce = self.loss == "ce" if self.task == "cls" else self.task == "joint" and self.cls_loss == "ce"
            object.__setattr__(self, "oversample", ce)

    def _check_choices(self) -> None:
        """Raise on a value outside its field's choices (those known without TensorFlow)."""
        if self.holdout_site and self.fold != 0:
            raise OptionError(
                f"`--fold site:{self.holdout_site}` is one fold; it cannot be combined with fold={self.fold}"
            )
        check_crop(self.crop, self.crop_margin, self.crop_jitter)
        if self.crop != "frame" and self.task != "cls":
            raise OptionError(f"`--crop {self.crop}` is for --task cls. Received: task={self.task!r}")
        if self.crop == "lesion" and not self.classes:
            raise OptionError("`--crop lesion` classifies lesions: --classes must hold benign or malignant")
        if self.consistency and self.task != "joint":
            raise OptionError(f"`consistency` is for --task joint. Received: task={self.task!r}")
        for name, allowed in (
            ("norm", NORMS),
            ("input_norm", INPUT_NORMS),
            ("mixed_precision", MIXED_PRECISION),
            ("strategy", STRATEGIES),
            ("schedule", SCHEDULES),
        ):
            if getattr(self, name) not in allowed:
                raise OptionError(f"`{name}` must be one of {list(allowed)}. Received: {name}={getattr(self, name)!r}")
        bad = [c for c in self.classes if c not in CLASS_NAMES]
        if bad or not self.classes:
            raise OptionError(
                f"`classes` must be a non-empty subset of {list(CLASS_NAMES)}. Received: {list(self.classes)}"
            )

    def _check_numbers(self) -> None:
        """Raise on a count below 1, a negative weight or epoch count, a learning rate <= 0."""
        if self.cls_weight < 0 or self.consistency < 0:
            raise OptionError(
                f"`cls_weight` and `consistency` must be >= 0. Received: {self.cls_weight}, {self.consistency}"
            )
        if self.freeze_epochs < 0:
            raise OptionError(f"`freeze_epochs` must be >= 0. Received: freeze_epochs={self.freeze_epochs}")
        for name in ("epochs", "batch_size", "img_size", "depth", "patch_size", "num_layers"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise OptionError(f"`{name}` must be at least 1. Received: {name}={getattr(self, name)}")
        if self.lr <= 0:
            raise OptionError(f"`lr` must be positive. Received: lr={self.lr}")
        if not 0 <= self.target_sensitivity <= 1:
            raise OptionError(
                f"`target_sensitivity` must be in [0, 1] (0: Youden's J). Received: {self.target_sensitivity}"
            )

    def architecture(self) -> dict[str, Any]:
        """The architecture options (:data:`models.options.ARCHITECTURE_OPTIONS`), None where unset."""
        return {k: getattr(self, k) for k in ARCHITECTURE_OPTIONS}

    def pipeline(self, **changes: Any) -> PipelineConfig:
        """The input pipeline's options for this run (the one place they are assembled), with ``changes``."""
        shared = ("img_size", "channels", "batch_size", "augment", "seed", "oversample", "crop", "crop_margin")
        shared += ("crop_jitter",)
        return PipelineConfig(**{**{k: getattr(self, k) for k in shared}, **changes})

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
            raise OptionError(f"unknown config keys {unknown}; expected some of {sorted(known)}")
        d = dict(d)
        if "classes" in d:
            d["classes"] = tuple(d["classes"])
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read ``config.json`` of a run."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
