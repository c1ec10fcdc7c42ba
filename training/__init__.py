"""Training, one floor above evaluation: each task's model, loss and phases (:mod:`training.task`,
:mod:`training.tasks`), the run's data and folds (:mod:`training.data`), the distribution strategy and
precision, checkpoints and resume, and the loop (:mod:`training.trainer`). Scoring is :mod:`evaluation`'s."""
