"""Model builders behind one registry (see the segmentation and classification issues)."""
