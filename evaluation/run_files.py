"""A run's folder and the files it fitted: the one place that reads and writes them.

Run folders are ``<project>/<task>/<name>``, incremented and never overwritten. A run (or each
fold of a ``--fold all`` run) holds its weights and what was fitted on its validation fold:
``lesion_gate.json`` (:mod:`evaluation.gate`), ``temperature.json`` (:mod:`evaluation.calibrate`)
and ``malignancy_threshold.json`` (the cut on P(malignant)). Training writes them, and evaluation,
serving and inference read them through this module, so none of those imports :mod:`training`.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from core.atomic import write_json
from core.errors import MissingFileError, OptionError, RunFileError
from data.shift import read_description
from evaluation.calibrate import FittedTemperature
from evaluation.cut import YOUDEN_RULE, FittedCut
from evaluation.gate import FittedGate
from models.postprocess import GATE_FILE, read_gate_file

if TYPE_CHECKING:
    import keras

    from config.train import TrainConfig

TEMPERATURE_FILE = "temperature.json"
"""A run's (or fold's) fitted temperature, beside ``weights/``."""
THRESHOLD_FILE = "malignancy_threshold.json"
"""The cut on P(malignant) chosen on a fold's validation images, saved in the fold's folder."""


def increment_run_dir(project: str | Path, task: str, name: str) -> Path:
    """Return the first free folder among ``name``, ``name2``, ``name3``... (not created).

    Args:
        project: Root of all runs (``runs``).
        task: ``"seg"`` or ``"cls"``.
        name: Run name.
    """
    root = Path(project) / task
    path = root / name
    if not path.exists():
        return path
    stem = re.sub(r"\d+$", "", name) or name
    taken = {p.name for p in root.iterdir()} if root.exists() else set()
    n = 2
    while f"{stem}{n}" in taken:
        n += 1
    return root / f"{stem}{n}"


def resolve_run(path: str | Path, weights: str = "best") -> tuple[TrainConfig, Path]:
    """Find the config and the weights file of a trained run or one fold of a ``--fold all`` run.

    Args:
        path: A run folder (``runs/seg/exp``) or a fold of a cross-validation run
            (``runs/seg/exp/fold2``).
        weights: ``"best"`` or ``"last"``.

    Returns:
        ``(TrainConfig, weights_path)``.

    Raises:
        FileNotFoundError: If ``path`` is not a run folder or has no such weights.
        ValueError: If ``path`` is a cross-validation run (which fold is ambiguous).
    """
    from config.train import TrainConfig

    path = Path(path)
    if (path / "config.json").is_file():
        cfg = TrainConfig.load(path / "config.json")
        if cfg.fold == -1:
            folds = sorted(p.name for p in path.glob("fold*") if p.is_dir())
            raise OptionError(
                f"{path} is a cross-validation run with folds {folds}; pass one fold's folder, "
                f"e.g. {path / (folds[0] if folds else 'fold0')}"
            )
    elif re.fullmatch(r"fold\d+", path.name) and (path.parent / "config.json").is_file():
        cfg = TrainConfig.load(path.parent / "config.json")
    else:
        raise MissingFileError(f"not a run folder (no config.json): {path}")
    if weights not in ("best", "last"):
        raise OptionError(f"`weights` must be 'best' or 'last'. Received: weights={weights!r}")
    file = path / "weights" / f"{weights}.keras"
    if not file.is_file():
        raise MissingFileError(f"the run has no {weights} weights yet: {file}")
    return cfg, file


def load_run_model(path: str | Path, compile: bool = True) -> keras.Model:
    """Load a run's ``.keras`` file with our custom layers, losses and metrics registered first.

    ``keras.models.load_model`` alone fails in a fresh interpreter on a model with a custom
    layer (ResNet's Caffe-style preprocessing, say) until the module defining it is imported.
    """
    import keras

    import losses.classification  # noqa: F401  (registers the custom losses)
    import losses.segmentation  # noqa: F401
    import metrics.segmentation  # noqa: F401  (registers the custom metrics)
    from models.hub import keras_hub, uses_keras_hub
    from models.registry import model_names

    model_names()  # imports every builder module, which registers the custom layers
    if not uses_keras_hub(path):
        return keras.models.load_model(path, compile=compile)
    keras_hub()  # registers keras-hub's layers (imported only when needed: it takes seconds)
    # keras-hub rebuilds a backbone's layers from its constructor arguments, so one saved frozen (the
    # first phase of a preset run) loads with the flag on itself but every layer inside trainable.
    # Loading as Keras does, after setting the flags again: the compiled state, then the weights and
    # the optimizer's variables (built for the frozen model's trainable weights, as they were saved).
    model = keras.models.load_model(path, compile=False)
    _set_frozen_again(model)
    if not compile:
        return model
    with zipfile.ZipFile(path) as z:
        compile_config = json.loads(z.read("config.json")).get("compile_config")
    if compile_config:  # the weights are read again, with the optimizer's variables this time
        model.compile_from_config(compile_config)
        model.optimizer.build(model.trainable_variables)
        model.load_weights(path)
    return model


def _set_frozen_again(layer) -> None:
    """Set ``trainable=False`` again on every frozen layer under ``layer``, so that it reaches the layers inside.

    Setting a layer's flag to the value it already holds changes nothing in Keras 3.15, hence True, then False.
    """
    for sub in getattr(layer, "layers", []):
        if sub.trainable:
            _set_frozen_again(sub)
        else:
            sub.trainable = True
            sub.trainable = False


def load_inference_model(path: str | Path) -> keras.Model:
    """Load a ``.keras`` file for inference: custom objects registered, no loss or optimizer."""
    return load_run_model(path, compile=False)


def save_gate(fold_dir: Path, fitted: FittedGate) -> Path:
    """Write ``fold_dir/lesion_gate.json``."""
    return write_json(Path(fold_dir) / GATE_FILE, fitted.to_dict())


def load_fitted_gate(fold_dir: Path) -> FittedGate | None:
    """The fold's :class:`FittedGate`, or None when the run has no gate."""
    doc = read_gate_file(fold_dir)
    return None if doc is None else FittedGate(doc["gate"], tuple(doc["halves"]))


def save_temperature(fold_dir: Path, fitted: FittedTemperature) -> Path:
    """Write ``fold_dir/temperature.json``."""
    return write_json(Path(fold_dir) / TEMPERATURE_FILE, fitted.to_dict())


def load_fitted_temperature(fold_dir: str | Path | None) -> FittedTemperature | None:
    """The temperature saved in a run (or fold) folder; None if it has none (runs before calibration).

    Raises:
        ValueError: If the file exists but does not hold a positive temperature.
    """
    path = Path(fold_dir) / TEMPERATURE_FILE if fold_dir is not None else None
    if path is None or not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    try:
        fitted = FittedTemperature(
            float(doc["temperature"]), tuple((tuple(h["ids"]), float(h["temperature"])) for h in doc["halves"])
        )
    except (KeyError, TypeError, ValueError) as e:
        raise RunFileError(f"{path} does not hold a temperature ({e}); delete it or train again") from e
    if not all(t > 0 for t in [fitted.temperature, *(t for _, t in fitted.halves)]):
        raise RunFileError(f"{path} holds a temperature that is not positive; delete it or train again")
    return fitted


def save_cut(fold_dir: Path, fitted: FittedCut) -> Path:
    """Write ``fold_dir/malignancy_threshold.json``: the cut on P(malignant), its halves' and how it was chosen."""
    return write_json(Path(fold_dir) / THRESHOLD_FILE, fitted.to_dict())


def load_fitted_cut(fold_dir: Path | None) -> FittedCut | None:
    """The cut saved in a run (or fold) folder, with its cross-fitted halves; None if it has none.

    A file written before the cut was cross-fitted has no halves: every case is then scored with the fold's cut.

    Raises:
        ValueError: If the file exists but does not hold a cut.
    """
    path = Path(fold_dir) / THRESHOLD_FILE if fold_dir is not None else None
    if path is None or not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    try:
        halves = tuple((tuple(h["ids"]), _cut_or_none(h["threshold"])) for h in doc.get("halves", []))
        return FittedCut(float(doc["threshold"]), halves, doc.get("rule", YOUDEN_RULE))
    except (KeyError, TypeError, ValueError) as e:
        raise RunFileError(f"{path} does not hold a malignancy cut ({e}); delete it or train again") from e


def _cut_or_none(value: object) -> float | None:
    return None if value is None else float(value)


def load_description(fold_dir: Path | None) -> dict | None:
    """The description of a run's (or fold's) training images (:func:`data.shift.describe`, saved as
    :data:`data.shift.DESCRIPTION_FILE`), or None (runs trained before it existed)."""
    return read_description(fold_dir)
