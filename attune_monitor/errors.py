"""The one base of Attune's domain errors.

Every exception Attune raises about its input (a recording it cannot read, a
roster that does not fit, a scenario file, a file it cannot write, an LSL
stream that went away ...) derives from :class:`AttuneError`, so a notebook
can catch them all with one ``except AttuneError`` and the ``attune`` command
line turns them into a one-line usage error (exit code 2) in one place
(:func:`attune_monitor.ui.cli.main`). The message says what happened and how
to fix it; nothing else is added to it.

This module is layer-free (it imports nothing from Attune), so every layer,
acquisition, dsp and ui alike, can derive its errors from it without breaking
the one-way flow acquisition -> dsp -> ui.
"""

from __future__ import annotations

__all__ = ["AttuneError", "ConfigError"]


class AttuneError(Exception):
    """Base of every error Attune raises about its input; its message says what happened and how to fix it."""


class ConfigError(AttuneError, ValueError):
    """A configuration dataclass got a value out of its range (raised in its ``__post_init__``).

    A :class:`ValueError` too, so code that caught the engine's or the detector's ``ValueError`` before the
    checks moved into the configs still catches it. The message names the class, the field, the value, the
    allowed range and a value to use instead.
    """
