"""A distributed fit loop for strategies Keras 3's ``fit`` cannot drive.

Keras 3.15's TensorFlow trainer fails under ``MultiWorkerMirroredStrategy``: it
reduces the scalar logs of every step with ``strategy.reduce("MEAN", v, axis=0)``
("Invalid reduction dimension 0 for input with 0 dimensions",
tensorflow/tensorflow#72388), and its first-batch model build reduces a
``PerReplica`` data batch. :func:`fit_distributed` keeps everything else of
Keras: the model's own ``train_step``/``test_step`` (loss scaling for the
replicas, mixed-precision loss scaling, gradient all-reduce in the optimizer),
its compiled metrics and the callbacks. Only the step loop and the reading of
the logs differ: the metric variables are ``ON_READ`` sums, so reading them in
cross-replica context all-reduces totals and counts over every replica of
every worker, which is the exact global mean (Keras averages per-replica means).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf


def _floats(logs: dict) -> dict[str, float]:
    return {k: float(v) for k, v in logs.items()}


def build_for_training(model: keras.Model, spec: object, strategy: tf.distribute.Strategy) -> None:
    """Create the compiled metrics', loss's and optimizer's state in the strategy scope.

    ``spec`` is the dataset's ``element_spec``: Keras' builder reads only shapes and dtypes,
    so no batch has to be drawn (and decoded) for it.
    """
    with strategy.scope():
        model._symbolic_build(data_batch=spec)  # Keras' own builder, given local specs


def fit_distributed(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    *,
    epochs: int,
    strategy: tf.distribute.Strategy,
    validation_data: tf.data.Dataset | None = None,
    initial_epoch: int = 0,
    steps_per_epoch: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 2,
) -> keras.callbacks.History:
    """Train ``model`` like ``model.fit`` with a ``strategy.run`` step loop.

    Args:
        model: A compiled model created in ``strategy``'s scope.
        train_ds: Batched training data of ``(x, y)`` or ``(x, y, sample_weight)`` with the
            global batch size; ``strategy`` splits it over replicas and workers.
        epochs: Index of the last epoch (as in ``fit``).
        strategy: Any ``tf.distribute`` strategy (also ``MultiWorkerMirroredStrategy``).
        validation_data: Batched validation data, evaluated after every epoch as ``val_*`` logs.
        initial_epoch: Epoch to start from (resume).
        steps_per_epoch: As in ``fit``: with it, every epoch draws this many batches from one
            iterator kept over all epochs (``train_ds`` must be long enough, e.g. repeated);
            without it, every epoch is one pass of ``train_ds``.
        callbacks: Keras callbacks; ``model.stop_training`` ends training as in ``fit``.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.

    Returns: the ``History`` callback.
    """
    build_for_training(model, train_ds.element_spec, strategy)
    dist_train = strategy.experimental_distribute_dataset(train_ds)
    dist_val = strategy.experimental_distribute_dataset(validation_data) if validation_data is not None else None
    steps = steps_per_epoch or int(train_ds.cardinality())
    batches = iter(dist_train) if steps_per_epoch else None
    cbs = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, add_progbar=verbose != 0, verbose=verbose, epochs=epochs,
        steps=steps if steps > 0 else None, model=model,
    )  # fmt: skip

    train_step, test_step = _step_functions(model, strategy)
    model.stop_training = False
    cbs.on_train_begin()
    logs: dict[str, float] = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        cbs.on_epoch_begin(epoch)
        epoch_batches = dist_train if batches is None else (next(batches) for _ in range(steps_per_epoch))
        for step, batch in enumerate(epoch_batches):
            cbs.on_train_batch_begin(step)
            logs = _floats(train_step(batch))
            cbs.on_train_batch_end(step, logs)
        epoch_logs = dict(logs)
        if dist_val is not None:
            epoch_logs.update({f"val_{k}": v for k, v in _validate(model, dist_val, test_step, cbs).items()})
        cbs.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    cbs.on_train_end(logs)
    return model.history


def _step_functions(model: keras.Model, strategy: tf.distribute.Strategy):
    """The compiled training and test steps: one ``strategy.run`` of the model's step, then its metrics."""

    @tf.function
    def train_step(batch):
        strategy.run(model.train_step, args=(batch,))
        return model.get_metrics_result()

    @tf.function
    def test_step(batch):
        strategy.run(model.test_step, args=(batch,))
        return model.get_metrics_result()

    return train_step, test_step


def _validate(model: keras.Model, dist_val, test_step, cbs: keras.callbacks.CallbackList) -> dict[str, float]:
    """One pass over the validation data with fresh metrics; the last step's metrics (as in ``fit``)."""
    model.reset_metrics()
    cbs.on_test_begin()
    val_logs: dict[str, float] = {}
    for step, batch in enumerate(dist_val):
        cbs.on_test_batch_begin(step)
        val_logs = _floats(test_step(batch))
        cbs.on_test_batch_end(step, val_logs)
    cbs.on_test_end(val_logs)
    return val_logs
