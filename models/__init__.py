"""Model builders behind one registry (:mod:`models.registry`): one builder per file, registered for
the tasks it serves (``seg``, ``cls``, ``joint``); :mod:`models.options` names their options without
importing Keras. Adding a model: a ``models/<name>.py`` with ``@register(...)`` on its builder, and its
module in :func:`models.registry._import_builders`."""
