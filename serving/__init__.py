"""Deployment: SavedModels in TF Serving's layout, warmup requests and the REST client."""
