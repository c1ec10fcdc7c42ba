"""tf.data input pipelines: decoding (:mod:`pipeline.decode`), Albumentations augmentation presets
(:mod:`pipeline.augment`), and :func:`pipeline.dataset.build_dataset`, which turns a run's cases and a
:class:`pipeline.config.PipelineConfig` into batches for a ``tf.distribute`` strategy."""
