"""One registry of model builders for both tasks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras

from core.errors import OptionError
from models.options import ARCHITECTURE_OPTIONS

TASKS = ("seg", "cls", "joint")


@dataclass(frozen=True)
class ModelEntry:
    """A registered builder, the task it serves, and for classifiers the layer Grad-CAM explains.

    ``cam_layer`` names the layer of the built model whose output is the last convolutional block's
    feature map (:mod:`models.gradcam`); None for models without a classification head. ``joint``
    says a segmenter's builder also makes a joint model (``joint_classes``, :mod:`models.joint`).
    ``hub`` marks a keras-hub transformer (:mod:`models.hub`): its builder takes ``weights``
    itself (none, a keras-hub preset or a file) and has no ``base_filters``, ``depth`` or ``norm``.
    ``imagenet`` marks a segmenter whose builder takes ``weights`` itself (none, ``imagenet`` or a
    file) because its encoder has ImageNet weights; it has no ``depth``.
    ``options`` names the architecture options of :data:`ARCHITECTURE_OPTIONS` the builder takes.
    """

    name: str
    task: str
    builder: Callable[..., keras.Model]
    cam_layer: str | None = None
    joint: bool = False
    hub: bool = False
    options: tuple[str, ...] = ()
    imagenet: bool = False

    def serves(self, task: str) -> bool:
        """Whether the builder makes a model for ``task``."""
        return self.task == task or (task == "joint" and self.joint)

    def cam_layer_for(self, task: str) -> str | None:
        """The Grad-CAM layer of the model built for ``task`` (a joint model's is its deepest features)."""
        if task == "joint":
            from models.joint import DEEP_FEATURES

            return DEEP_FEATURES
        return self.cam_layer


_REGISTRY: dict[str, ModelEntry] = {}


Builder = Callable[..., keras.Model]


def register(
    name: str,
    task: str,
    cam_layer: str | None = None,
    joint: bool = False,
    hub: bool = False,
    options: tuple[str, ...] = (),
    imagenet: bool = False,
) -> Callable[[Builder], Builder]:
    """Decorator registering a builder under ``name`` for ``task`` (one of :data:`TASKS`), see :class:`ModelEntry`."""
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {list(TASKS)}. Received: task={task!r}")
    unknown = sorted(set(options) - set(ARCHITECTURE_OPTIONS))
    if unknown:
        raise ValueError(f"`options` must be some of {list(ARCHITECTURE_OPTIONS)}. Received: {unknown}")

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(name, task, fn, cam_layer, joint, hub, tuple(options), imagenet)
        return fn

    return deco


def model_names(task: str | None = None) -> list[str]:
    """Registered model names, optionally only those serving ``task`` (:meth:`ModelEntry.serves`)."""
    _import_builders()
    return sorted(n for n, e in _REGISTRY.items() if task is None or e.serves(task))


def get_model_entry(name: str) -> ModelEntry:
    """Return the entry of ``name``.

    Raises:
        ValueError: If ``name`` is not registered; the message lists the valid names.
    """
    _import_builders()
    if name not in _REGISTRY:
        raise OptionError(f"`model` must be one of {model_names()}. Received: model={name!r}")
    return _REGISTRY[name]


def architecture_options(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """The architecture options in ``values`` that are set (not None), checked against ``name``'s builder.

    Raises:
        ValueError: If an option is set that ``name``'s builder does not take; the message names
            the flag and the models that have it.
    """
    entry = get_model_entry(name)
    chosen = {k: v for k, v in values.items() if v is not None}
    for key in chosen:
        if key not in entry.options:
            flag = f"--{key.replace('_', '-')}"
            having = [n for n in model_names() if key in _REGISTRY[n].options]
            raise OptionError(f"`{flag}` is an option of {having}; --model {name} does not have it")
    return chosen


def build_model(name: str, **kwargs) -> keras.Model:
    """Build the registered model ``name`` with the builder's keyword arguments."""
    return get_model_entry(name).builder(**kwargs)


def _import_builders() -> None:
    # Importing the modules runs their @register decorators.
    from models import (  # noqa: F401
        convnext_tiny,
        deit_tiny,
        efficientnet_b0,
        efficientnet_b0_unet,
        efficientnet_lite0,
        efficientnet_lite0_unet,
        mit_b0_cls,
        resnet50,
        resnet50_se,
        resunet,
        segformer,
        unet,
    )
