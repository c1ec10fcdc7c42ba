"""Write a trained run as a TF Serving model version.

``<root>/<name>/<version>/`` holds ``saved_model.pb``, ``variables/`` and
``assets.extra/`` (the warmup requests and ``export.json``, which records the
task, classes, input size and source run for :mod:`predict`). The version is
written under a temporary name and renamed into place, so TF Serving, which
polls the model folder, never sees a half-written version, and an existing
version is never overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import keras

from core.atomic import write_json
from core.errors import MissingFileError, OptionError, OutputExistsError
from evaluation.run_files import load_description, load_fitted_cut, load_fitted_temperature
from models.postprocess import NO_GATE, load_gate
from serving.layout import check_name, next_version, versions, write_models_config
from serving.signatures import ServingSpec, serving_fns
from serving.warmup import WARMUP_FILE, write_warmup

if TYPE_CHECKING:
    from config.train import TrainConfig

EXPORT_INFO = "export.json"


@dataclass(frozen=True)
class ExportResult:
    """Where an export went."""

    name: str
    version: int
    path: Path
    models_config: Path


def spec_from_config(cfg: TrainConfig, fold_dir: str | Path | None = None, postprocess: str = "none") -> ServingSpec:
    """The :class:`ServingSpec` of a run's :class:`~config.train.TrainConfig`, with what the run fitted
    in ``fold_dir`` (the run's folder, or one fold's): the lesion gate for segmentation, the temperature
    (1: none) and the malignancy cut (None: none) for classification, all three for a joint model; and
    ``postprocess``.

    Raises:
        ValueError: On an unknown ``postprocess``, or one other than ``none`` for a classifier.
        OptionError: For a lesion classifier (``--crop lesion``), which reads crops, not whole images.
    """
    if cfg.crop == "lesion":
        raise OptionError(
            f"{fold_dir or 'the run'} is a lesion classifier (--crop lesion): it reads a crop around a lesion, "
            "not a whole image, so it is not exported or run on images alone; evaluate.py scores it on a "
            "dataset's lesion masks"
        )
    gate = load_gate(fold_dir) if fold_dir is not None and cfg.task != "cls" else NO_GATE
    fitted = load_fitted_temperature(fold_dir) if cfg.task != "seg" else None
    cut = load_fitted_cut(fold_dir) if cfg.task != "seg" else None
    return ServingSpec(
        task=cfg.task,
        img_size=cfg.img_size,
        channels=cfg.channels,
        gate=gate,
        postprocess=postprocess,
        temperature=fitted.temperature if fitted is not None else 1.0,
        malignancy_cut=cut.threshold if cut is not None else None,
    )


def write_endpoints(
    models: Sequence[keras.Model],
    endpoints: dict[str, tuple[Callable, list]],
    path: Path,
    name: str,
    spec: dict,
    info: dict | None = None,
) -> Path:
    """Write a SavedModel of ``endpoints`` (``{name: (fn, input_signature)}``) over ``models``, its warmup
    requests and ``export.json`` (``spec``, the name, the signatures, Keras' version, ``info``) to ``path``.

    ``path`` must not exist. Callers make it appear atomically (see :func:`export_servable`).
    """
    archive = keras.export.ExportArchive()
    for model in models:
        archive.track(model)
    for endpoint, (fn, signature) in endpoints.items():
        archive.add_endpoint(name=endpoint, fn=fn, input_signature=signature)
    archive.write_out(str(path), verbose=False)
    extra = path / "assets.extra"
    write_warmup(extra / WARMUP_FILE, name)
    write_json(
        extra / EXPORT_INFO,
        {**spec, "name": name, "signatures": list(endpoints), "keras_version": keras.__version__, **(info or {})},
    )
    return path


def write_servable(model: keras.Model, spec: ServingSpec, path: Path, name: str, info: dict | None = None) -> Path:
    """Write a SavedModel with both signatures, warmup requests and ``export.json`` to ``path``.

    ``path`` must not exist. Callers make it appear atomically (see :func:`export_model`).
    """
    return write_endpoints([model], serving_fns(model, spec), path, name, asdict(spec), info)


def export_model(
    model: keras.Model,
    spec: ServingSpec,
    root: str | Path,
    name: str,
    version: int | None = None,
    source: str = "",
    image_description: dict | None = None,
) -> ExportResult:
    """Export ``model`` with both serving signatures as ``root/name/version``.

    Args:
        model: A trained Keras model taking float32 pixels in [0, 255]; it is not changed.
        spec: Task and input geometry.
        root: Export root (TF Serving's ``--model_base_path`` parent).
        name: Served model name.
        version: Version number; default one more than the highest existing.
        source: Where the model came from (recorded in ``assets.extra/export.json``).
        image_description: The run's training images described (:mod:`data.shift`), recorded there too so
            that ``predict.py`` flags images unlike them.

    Raises:
        FileExistsError: If ``version`` already exists.
        ValueError: On a bad name or version.
    """

    def write(path: Path, info: dict) -> Path:
        return write_servable(model, spec, path, name, info)

    return export_servable(write, root, name, version, source, image_description)


def export_servable(
    write: Callable[[Path, dict], Path],
    root: str | Path,
    name: str,
    version: int | None = None,
    source: str = "",
    image_description: dict | None = None,
) -> ExportResult:
    """Write a version with ``write(path, info)`` (:func:`write_servable`'s, or another servable's) as
    ``root/name/version``, atomically, and list it in ``root``'s ``models.config`` (see :func:`export_model`)."""
    root = Path(root)
    model_dir = root / check_name(name)
    if version is None:
        version = next_version(model_dir)
    if version < 1:
        raise OptionError(f"`version` must be a positive integer. Received: version={version}")
    final = model_dir / str(version)
    if final.exists():
        raise OutputExistsError(
            f"{final} exists; versions are never overwritten. Existing: {versions(model_dir)}; "
            "omit --version to write the next one"
        )
    model_dir.mkdir(parents=True, exist_ok=True)
    info = {"version": version, "source": source, "image_description": image_description}
    _write_atomically(lambda tmp: write(tmp, info), final, replace=False)
    return ExportResult(name, version, final, write_models_config(root))


def _write_atomically(write: Callable[[Path], Path], final: Path, replace: bool) -> None:
    """``write`` into a hidden temporary folder beside ``final``, then rename it onto ``final``.

    The temporary name is not numeric, so TF Serving ignores it. ``replace=False`` fails rather than
    replace a folder created meanwhile; ``replace=True`` swaps out an existing ``final``.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        shutil.rmtree(tmp)
        write(tmp)
        if replace and final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_run_servable(model: keras.Model, cfg: TrainConfig, fold_dir: Path) -> Path:
    """Write a run's best weights as ``fold_dir/saved_model`` with the serving signatures (replaced atomically).

    ``train.py`` passes this to the trainer as its ``on_best`` step unless ``--no-export``.
    """
    path = Path(fold_dir) / "saved_model"
    info = {"source": str(path.parent / "weights"), "image_description": load_description(fold_dir)}
    spec = spec_from_config(cfg, fold_dir)
    _write_atomically(lambda tmp: write_servable(model, spec, tmp, cfg.model, info), path, replace=True)
    return path


def read_export_info(version_dir: str | Path) -> dict:
    """The ``export.json`` of an exported version.

    Raises:
        FileNotFoundError: If the folder was not written by :func:`export_model`.
    """
    path = Path(version_dir) / "assets.extra" / EXPORT_INFO
    if not path.is_file():
        raise MissingFileError(f"not an export of this project (no assets.extra/{EXPORT_INFO}): {version_dir}")
    return json.loads(path.read_text())


def resolve_version_dir(path: str | Path) -> Path:
    """``export/<name>/<version>`` as given, or the highest version of ``export/<name>``.

    Raises:
        FileNotFoundError: If there is no SavedModel there.
    """
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    found = versions(path)
    if found:
        return path / str(found[-1])
    raise MissingFileError(f"no SavedModel (saved_model.pb) or numeric version folder in {path}")
