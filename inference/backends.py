"""Where predictions come from: a run folder, an exported SavedModel, or a TF Serving server.

Every backend maps a list of encoded images to the ``serving_default`` outputs
(:mod:`serving.signatures`), so the rest of prediction is one code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from core.errors import MissingFileError, OptionError
from serving.rest import ServingError, parse_response, post_predict, predict_url, request_body
from serving.signatures import BYTES_INPUT, BYTES_SIGNATURE


class Backend:
    """Encoded images in, named output arrays out.

    Attributes:
        task: ``"seg"``, ``"cls"``, ``"joint"`` or ``"diagnosis"`` (for a server: known after the first answer).
        description: What is predicting, for messages.
    """

    task: str | None = None
    description: str = ""
    training_images: dict | None = None
    """The description of the training images (:mod:`data.shift`), when the model comes with one."""
    tta_in_graph: bool = False
    """The backend does flip test-time augmentation itself (a diagnosis: its boxes cannot be averaged afterwards)."""

    def __call__(self, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        raise NotImplementedError


class RunBackend(Backend):
    """A Keras model from a run folder, behind the same serving function an export has."""

    def __init__(self, run_dir: str | Path, weights: str = "best") -> None:
        from evaluation.run_files import load_description, load_inference_model, resolve_run
        from serving.export import spec_from_config
        from serving.signatures import compiled_serving_fns

        cfg, file = resolve_run(run_dir, weights)
        # The run's lesion gate was fitted for its best weights; the last ones go ungated.
        gate_dir = file.parent.parent if file.stem == "best" else None
        self.task = cfg.task
        self.description = f"{file} ({cfg.model})"
        self.training_images = load_description(file.parent.parent)
        self._fn = compiled_serving_fns(load_inference_model(file), spec_from_config(cfg, gate_dir))[BYTES_SIGNATURE]

    def __call__(self, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self._fn(tf.constant(list(images), tf.string)).items()}


class DiagnosisBackend(Backend):
    """A segmentation run and a lesion classifier's run as one diagnosis (:mod:`serving.diagnosis`), in process;
    with ``tta`` its flip test-time augmentation endpoint."""

    def __init__(
        self, lesion_run: str | Path, seg_run: str | Path, weights: str = "best", postprocess: str = "none",
        tta: bool = False,
    ) -> None:  # fmt: skip
        from evaluation.run_files import load_description, load_inference_model, resolve_run
        from serving.diagnosis import TTA_SIGNATURE, diagnosis_fns, diagnosis_spec

        cfg, file = resolve_run(lesion_run, weights)
        seg_cfg, seg_file = resolve_run(seg_run, weights)
        spec = diagnosis_spec(seg_cfg, seg_file.parent.parent, cfg, file.parent.parent, postprocess)
        self.task = "diagnosis"
        self.description = f"{seg_file} ({seg_cfg.model}) and {file} ({cfg.model} on lesion crops)"
        self.training_images = load_description(seg_file.parent.parent)
        fns = diagnosis_fns(load_inference_model(seg_file), load_inference_model(file), spec)
        fn, signature = fns[TTA_SIGNATURE if tta else BYTES_SIGNATURE]
        self._fn = tf.function(fn, input_signature=signature, reduce_retracing=True)
        self.tta_in_graph = tta

    def __call__(self, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self._fn(tf.constant(list(images), tf.string)).items()}


class SavedModelBackend(Backend):
    """An exported version (``export/<name>/<version>``; a model folder means its latest version); with ``tta``,
    an exported diagnosis answers through its flip test-time augmentation endpoint.

    Raises:
        OptionError: If ``tta`` asks an exported diagnosis that has no such endpoint.
    """

    def __init__(self, path: str | Path, tta: bool = False) -> None:
        from serving.diagnosis import TTA_SIGNATURE
        from serving.export import read_export_info, resolve_version_dir

        version_dir = resolve_version_dir(path)
        info = read_export_info(version_dir)
        self.task = info["task"]
        version = f" v{info['version']}" if "version" in info else ""
        self.description = f"{version_dir} ({info['name']}{version})"
        self.training_images = info.get("image_description")
        signature = BYTES_SIGNATURE
        if tta and self.task == "diagnosis":
            if TTA_SIGNATURE not in info.get("signatures", []):
                raise OptionError(f"{version_dir} has no {TTA_SIGNATURE} signature; export the diagnosis again")
            signature, self.tta_in_graph = TTA_SIGNATURE, True
        self._fn = tf.saved_model.load(str(version_dir)).signatures[signature]

    def __call__(self, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        out = self._fn(**{BYTES_INPUT: tf.constant(list(images), tf.string)})
        return {k: v.numpy() for k, v in out.items()}


class ServerBackend(Backend):
    """A model served by TF Serving, over its REST API."""

    def __init__(self, server: str, timeout: float = 60.0) -> None:
        self.url = predict_url(server)
        self.description = self.url
        self.timeout = timeout

    def __call__(self, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        out = parse_response(post_predict(self.url, request_body(images), self.timeout))
        has_mask, has_class = "mask_probability" in out, "probabilities" in out
        task = "joint" if has_mask and has_class else "seg" if has_mask else "cls" if has_class else None
        if task == "joint" and "lesion_boxes" in out:
            task = "diagnosis"
        if task is None:
            raise ServingError(
                f"{self.url} is not a model exported by export.py: outputs {sorted(out)} have neither "
                "`probabilities` nor `mask_probability`"
            )
        self.task = task
        if has_mask:
            out["mask_probability"] = out["mask_probability"].astype(np.float32)
        if has_class:
            out["probabilities"] = out["probabilities"].astype(np.float32)
            out["class_name"] = out["class_name"].astype(str)
        return out


def open_backend(
    model: str | None,
    server: str | None,
    weights: str = "best",
    segmenter: str = "",
    postprocess: str = "none",
    tta: bool = False,
) -> Backend:
    """The backend for ``--model`` (run or export folder) or ``--server`` (exactly one of them); with
    ``segmenter``, ``model`` is a lesion classifier's run and the two diagnose together, the segmenter's
    masks post-processed by ``postprocess`` before the lesions are found (as ``evaluate.py`` does). ``tta``
    makes a diagnosis (runs or export) answer with flip test-time augmentation in its graph; other models
    are flipped by the caller.

    Raises:
        ValueError: If both or neither are given.
        FileNotFoundError: If ``model`` is neither a run nor an export.
    """
    if bool(model) == bool(server):
        raise OptionError("pass exactly one of `--model RUN_DIR|EXPORT_DIR` and `--server URL`")
    if server:
        return ServerBackend(server)
    if segmenter:
        return DiagnosisBackend(model, segmenter, weights, postprocess, tta)
    path = Path(model)
    if (path / "saved_model.pb").is_file():  # an export version, or a run's own saved_model/
        return SavedModelBackend(path, tta)
    if (path / "config.json").is_file() or (path.parent / "config.json").is_file():
        return RunBackend(path, weights)
    if path.is_dir():
        return SavedModelBackend(path, tta)  # export/<name>: its latest version
    raise MissingFileError(f"`--model` must be a run folder or an export folder. Received: {model}")
