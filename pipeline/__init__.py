"""tf.data input pipelines with Albumentations augmentation (see the input pipeline issue)."""
