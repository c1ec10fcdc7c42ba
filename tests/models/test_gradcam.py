"""Grad-CAM: the map of a classifier that must look at a lesion peaks inside it."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.classifier import BACKBONE, assemble
from models.gradcam import cam_model, grad_cam
from models.registry import get_model_entry, model_names


def _images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Noisy 32x32 images; class 1 has a bright 8x8 square somewhere, class 0 none. Returns the corners too."""
    x = rng.normal(100, 20, (n, 32, 32, 3)).clip(0, 255).astype(np.float32)
    y = np.arange(n) % 2
    corners = []
    for i in range(n):
        r, c = rng.integers(0, 24, 2)
        corners.append((int(r), int(c)))
        if y[i]:
            x[i, r : r + 8, c : c + 8] = 230.0
    return x, y, corners


def _tiny_classifier() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 1, activation="relu")(inputs)  # per-pixel features: brightness, not edges
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    backbone = keras.Model(inputs, h, name=BACKBONE)  # 16x16 feature map
    return assemble(backbone, 32, 2, 0.0, "tiny")


def test_map_peaks_inside_the_lesion_a_trained_classifier_uses() -> None:
    rng = np.random.default_rng(0)
    model = _tiny_classifier()
    x, y, _ = _images(256, rng)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=25, batch_size=32, verbose=0)
    tx, ty, corners = _images(20, np.random.default_rng(1))
    assert (model.predict(tx, verbose=0).argmax(1) == ty).mean() >= 0.85  # it learned the square
    maps, ids, probs = grad_cam(cam_model(model, BACKBONE), tx[ty == 1], np.ones(int(ty.sum()), int))
    assert maps.shape == (10, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    np.testing.assert_allclose(probs, model.predict(tx[ty == 1], verbose=0), atol=1e-5)
    inside = 0
    for m, (r, c) in zip(maps, [c for c, t in zip(corners, ty, strict=True) if t], strict=True):
        pr, pc = np.unravel_index(np.argmax(m), m.shape)
        inside += (r <= pr < r + 8) and (c <= pc < c + 8)
        assert m[r : r + 8, c : c + 8].mean() > 1.5 * m.mean()  # the square is hotter than the image
    assert inside >= 9
    default_maps, default_ids, _ = grad_cam(cam_model(model, BACKBONE), tx[:4])
    np.testing.assert_array_equal(default_ids, model.predict(tx[:4], verbose=0).argmax(1))
    assert default_maps.shape == (4, 32, 32)


def test_every_classifier_names_its_cam_layer_and_a_wrong_name_is_a_clear_error() -> None:
    assert all(get_model_entry(n).cam_layer == BACKBONE for n in model_names("cls"))
    assert all(get_model_entry(n).cam_layer is None for n in model_names("seg"))
    with pytest.raises(ValueError, match=r"Grad-CAM needs the layers \['conv9'\]"):
        cam_model(_tiny_classifier(), "conv9")
