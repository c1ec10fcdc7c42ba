"""Segmentation's part of training: the model is built from the run's config."""

from __future__ import annotations

import keras
import pytest

import train
from config.train import TrainConfig
from training.seg import build_seg_model


@pytest.mark.parametrize("model", ["unet", "resunet"])
def test_seg_model_follows_depth_dropout_and_filters_flags(model: str) -> None:
    args = train.parse_args(
        ["--task", "seg", "--model", model, "--img-size", "32", "--depth", "3", "--dropout", "0", "--base-filters", "4"]
    )
    built = build_seg_model(train.config_from_args(args))
    ups = sorted(layer.name for layer in built.layers if layer.name.endswith("_up"))
    assert ups == ["dec0_up", "dec1_up", "dec2_up"]  # one up-sampling step per level
    assert not [layer for layer in built.layers if isinstance(layer, keras.layers.SpatialDropout2D)]
    assert min(built.get_layer(name).input.shape[1] for name in ups) == 32 // 2**3  # the bottleneck
    default = build_seg_model(TrainConfig(model=model, img_size=32, base_filters=4))
    assert [layer for layer in default.layers if isinstance(layer, keras.layers.SpatialDropout2D)]
    assert "rescale" in [layer.name for layer in default.layers]
    args = train.parse_args(["--task", "seg", "--model", model, "--img-size", "32", "--input-norm", "image"])
    standardized = build_seg_model(train.config_from_args(args))
    assert "image_standardization" in [layer.name for layer in standardized.layers]


def test_seg_model_rejects_a_size_the_depth_cannot_halve() -> None:
    with pytest.raises(ValueError, match=r"multiple of 32 \(2\*\*depth, depth=5\)"):
        build_seg_model(TrainConfig(img_size=48, depth=5, base_filters=4))
    with pytest.raises(ValueError, match="depth"):
        TrainConfig(depth=0)
