"""Evaluation metrics: segmentation overlap (Dice, IoU) and, later, classification reports."""
