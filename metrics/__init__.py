"""Metrics: :mod:`metrics.segmentation` (per-image Dice and IoU, and the Keras metrics training
logs), :mod:`metrics.classification` (reports with bootstrap intervals, malignant against benign,
the Youden and sensitivity-target cuts) and :mod:`metrics.calibration` (temperature, ECE, Brier score)."""
