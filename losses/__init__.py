"""Segmentation and classification losses (see the segmentation and classification issues)."""
