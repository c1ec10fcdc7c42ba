"""Prediction on new images: sources, model backends, lesion measurements and outputs."""
