"""`fit_distributed` against Keras' own `fit` under MirroredStrategy on two logical CPUs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.loop import fit_distributed
from training.strategy import make_strategy

DEVICES = ["/cpu:0", "/cpu:1"]


def _data(n: int = 16, seed: int = 0) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("float32")[:, None]
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4, drop_remainder=True)


def _model(strategy: tf.distribute.Strategy, weights: list[np.ndarray] | None = None) -> keras.Model:
    with strategy.scope():
        inputs = keras.Input((8, 8, 1))
        h = keras.layers.Conv2D(4, 3, padding="same")(inputs)
        h = keras.layers.BatchNormalization(synchronized=True)(h)
        h = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(h))
        model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))
        if weights is not None:
            model.set_weights(weights)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy", metrics=["mae"])
    return model


def test_matches_keras_fit_under_mirrored_strategy() -> None:
    strategy = make_strategy("mirrored", DEVICES)
    keras.utils.set_random_seed(0)
    ref = _model(strategy)
    start = [w.copy() for w in ref.get_weights()]
    ref_hist = ref.fit(_data(), validation_data=_data(8, seed=1), epochs=2, verbose=0, shuffle=False)
    ours = _model(strategy, start)
    hist = fit_distributed(ours, _data(), strategy=strategy, validation_data=_data(8, seed=1), epochs=2, verbose=0)
    assert set(hist.history) == set(ref_hist.history) == {"loss", "mae", "val_loss", "val_mae"}
    for key, values in ref_hist.history.items():
        assert hist.history[key] == pytest.approx(values, rel=1e-4, abs=1e-6), key
    for a, b in zip(ours.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert int(ours.optimizer.iterations.numpy()) == 2 * 4  # 16 samples / global batch 4, two epochs


def test_steps_per_epoch_draws_every_epoch_from_one_iterator_like_keras_fit() -> None:
    strategy = make_strategy("mirrored", DEVICES)
    keras.utils.set_random_seed(0)
    ref = _model(strategy)
    start = [w.copy() for w in ref.get_weights()]
    data = _data().repeat()  # 4 batches a pass; 3 steps an epoch, so epoch 2 must go on where epoch 1 stopped
    ref_hist = ref.fit(data, steps_per_epoch=3, epochs=3, verbose=0, shuffle=False)
    ours = _model(strategy, start)
    hist = fit_distributed(ours, data, strategy=strategy, steps_per_epoch=3, epochs=3, verbose=0)
    assert hist.history["loss"] == pytest.approx(ref_hist.history["loss"], rel=1e-4, abs=1e-6)
    for a, b in zip(ours.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert int(ours.optimizer.iterations.numpy()) == 3 * 3


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.stop_epoch, self.seen = epoch, []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seen.append((epoch, sorted(logs)))
        if epoch == self.stop_epoch:
            self.model.stop_training = True


def test_initial_epoch_callbacks_and_early_stop() -> None:
    strategy = make_strategy("mirrored", DEVICES)
    model = _model(strategy)
    stop = _StopAfter(epoch=3)
    hist = fit_distributed(model, _data(), strategy=strategy, epochs=10, initial_epoch=2, callbacks=[stop], verbose=0)
    assert [e for e, _ in stop.seen] == [2, 3]  # resumed at epoch 2, stopped after epoch 3
    assert hist.epoch == [2, 3] and stop.seen[0][1] == ["loss", "mae"]  # no validation data: no val_ logs
    assert all(np.isfinite(v) for v in hist.history["loss"])
