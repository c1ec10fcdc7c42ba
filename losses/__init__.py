"""Losses as registered Keras serializables: :mod:`losses.segmentation` (Dice, BCE + Dice, focal Tversky,
by ``--loss`` name in ``SEG_LOSSES``) and :mod:`losses.classification` (cross-entropy, class-weighted
cross-entropy and focal loss weighted by the training split's class frequencies, ``CLS_LOSSES``)."""
