"""Scoring a model, one floor below training: predict a dataset, apply what the run fitted (lesion gate,
temperature, malignancy cut), score with intervals over patients, break down by site and scanner, plot.

- :mod:`evaluation.base`: the contract, :class:`~evaluation.base.EvalRequest` and
  :class:`~evaluation.base.Evaluator`; :mod:`evaluation.tasks` gives each task's evaluator.
- :mod:`evaluation.seg`, :mod:`evaluation.cls`, :mod:`evaluation.joint`: the evaluators.
- :mod:`evaluation.gate`, :mod:`evaluation.calibrate`: fitting the lesion gate and the temperature
  with cross-fitted halves; :mod:`evaluation.run_files` reads and writes them and a run's weights.
- :mod:`evaluation.external`, :mod:`evaluation.ensemble`, :mod:`evaluation.summary`: other
  datasets, combined classifiers, and the figures a command prints.
"""
