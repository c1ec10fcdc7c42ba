"""The models' option names, with no Keras import: the config and the flags read them without TensorFlow.

Each tuple is defined here only; the modules that act on the options import it from here.
"""

from __future__ import annotations

NORMS = ("instance", "batch")
"""Normalization after each convolution of the U-Net family (:func:`models.unet.norm_layer`)."""
INPUT_NORMS = ("fixed", "image")
"""How a model scales its input pixels (:mod:`models.normalize`)."""
ARCHITECTURE_OPTIONS = ("patch_size", "num_layers", "drop_path")
"""Builder arguments that only some architectures have (``train.py --patch-size``, ``--num-layers``,
``--drop-path``): a ViT's patch side and number of blocks, an encoder's stochastic depth rate."""
OFFLINE_IMAGENET = ("efficientnet_lite0", "efficientnet_lite0_unet")
"""The models whose ImageNet weights install with the project (:mod:`models.lite_weights`): ``--weights``
defaults to ``imagenet`` for them and to ``none`` for every other model."""
POSTPROCESS = ("none", "largest")
"""Mask post-processing choices (:func:`models.postprocess.postprocess_np`): ``--postprocess`` of
evaluate.py, predict.py and export.py."""
