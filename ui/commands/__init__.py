"""The ``attune`` commands: one module per command (``register`` its parser, ``run`` it).

What several commands share lives in ``options``.
"""

__all__: list[str] = []  # nothing here: one module per 'attune' command
