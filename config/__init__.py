"""What determines a run, as data: :class:`config.train.TrainConfig` (a frozen dataclass saved with
every run as ``config.json``), each field's flag, help, choices and tasks in its metadata, and
:mod:`config.flags`, which turns those fields into ``train.py``'s command line.

No TensorFlow here: the config reads and validates without it (choices that only the model
registry or the losses know are named as ``"module:attribute"`` and looked up when the parser is built).
"""
