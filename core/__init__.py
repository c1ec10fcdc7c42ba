"""The floor under every package: class names and statistics, atomic writes, the data error type.

Nothing here imports another package of the project, so data, losses, models and everything
above may import it."""
