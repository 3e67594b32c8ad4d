"""The one door to pylsl: ``from acquisition.lsl import pylsl``.

Importing this module makes sure an LSL configuration is in force (the
shipped loopback-only one, unless :func:`attune_monitor.acquisition.lslconfig.configure`
chose another) before pylsl loads liblsl.
"""

from __future__ import annotations

import os

from .lslconfig import configure

if "LSLAPICFG" not in os.environ:
    configure(None)

import pylsl  # noqa: E402  (must follow the configuration)

__all__ = ["pylsl"]
