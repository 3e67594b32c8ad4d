"""Which ``lsl_api.cfg`` liblsl reads, decided before pylsl is first imported.

liblsl reads its configuration once, from the file named by the ``LSLAPICFG``
environment variable, the first time the library is used. It silently falls
back to its defaults (multicast discovery on every network interface) when the
file cannot be parsed, so the file we ship uses ``;`` comments only.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["DEFAULT_CONFIG", "SCOPES", "configure"]

#: The loopback-only configuration shipped with Attune.
DEFAULT_CONFIG = Path(__file__).with_name("lsl_api.cfg")

SCOPES = ("machine", "link", "site")

_SCOPE_TEMPLATE = """; Attune: LSL configuration for live use, scope chosen with --lsl-scope.
[ports]
IPv6 = disable
PortRange = 256
AllowRandomPorts = false

[multicast]
ResolveScope = {scope}

[lab]
KnownPeers = {{127.0.0.1}}

[log]
level = -3
"""


def _remove(path: Path) -> None:
    """Delete a configuration file this process wrote (at exit); gone already is fine."""
    with contextlib.suppress(OSError):
        path.unlink()


def configure(scope: str | None = None) -> Path:
    """Put an LSL configuration in force for this process and its children.

    Parameters
    ----------
    scope : {"machine", "link", "site"} | None
        ``None`` or ``"machine"`` keeps discovery on loopback with the shipped
        ``lsl_api.cfg`` (unless ``LSLAPICFG`` already names a file, which is
        then respected). ``"link"`` / ``"site"`` write a config that lets
        liblsl discover devices on the local network — for live use with
        wearables on other computers only. That config is a temporary file,
        deleted when this process exits.

    Returns
    -------
    path : Path
        The configuration file now named by ``LSLAPICFG``.

    Raises
    ------
    RuntimeError
        If pylsl was already imported with another configuration: liblsl
        reads its configuration only once per process.
    """
    if scope is not None and scope not in SCOPES:
        raise ValueError(
            f"Invalid value for 'lsl_scope': expected one of {', '.join(SCOPES)}, "
            f"but got {scope!r}."
        )
    if scope in (None, "machine"):
        current = os.environ.get("LSLAPICFG")
        path = Path(current) if (current and scope is None) else DEFAULT_CONFIG
    else:
        fd, name = tempfile.mkstemp(prefix=f"attune-lsl-{scope}-", suffix=".cfg")
        with os.fdopen(fd, "w") as fh:
            fh.write(_SCOPE_TEMPLATE.format(scope=scope))
        path = Path(name)
        atexit.register(_remove, path)  # liblsl has read it by then; one file per run must not pile up in /tmp
    if "pylsl" in sys.modules and os.environ.get("LSLAPICFG") != str(path):
        raise RuntimeError(
            "pylsl was imported before the LSL configuration was chosen; "
            "call acquisition.lslconfig.configure() before importing pylsl."
        )
    os.environ["LSLAPICFG"] = str(path)
    return path
