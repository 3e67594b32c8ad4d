"""User-facing errors: one clear line, exit code 2, never a traceback.

Also the checks every command makes on the paths it will write, *before* the
work: a result that cannot be written should be refused in the first second,
not after an hour of analysis.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from attune_monitor.errors import AttuneError

__all__ = ["UsageError", "os_error_text", "check_writable_folder", "check_output_file"]


class UsageError(AttuneError):
    """Unusable input or arguments. The message says what was wrong and how to fix it.

    One of the :class:`attune_monitor.errors.AttuneError` that ``attune`` turns into its one-line error
    (:func:`attune_monitor.ui.cli.main`).
    """

    exit_code = 2


def os_error_text(exc: OSError) -> str:
    """An :class:`OSError` in words, without Python's ``[Errno 2] ...: 'path'`` decoration.

    Attune's own ``OSError`` subclasses (``XdfWriteError``) carry a complete sentence as ``strerror``; the
    operating system's errors carry a short reason and the file name.
    """
    reason = exc.strerror or (exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc))
    name = exc.filename
    if name is not None and str(name) not in reason:
        return f"'{name}': {reason}"
    return str(reason)


def _first_existing(folder: Path) -> Path:
    """The nearest folder above (or at) ``folder`` that exists."""
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable_folder(folder, option: str, *, create: bool = False) -> Path:
    """Make sure files can be created in ``folder`` (created with its parents when ``create``).

    A probe file is created there and removed, so read-only file systems, ``/proc`` and folders of other
    users are refused as well as missing ones.

    Parameters
    ----------
    folder : str | Path
    option : str
        The command-line option the folder came from (``"--json"``), for the message.
    create : bool
        Create the folder (and its parents, mode 0700) when it is missing; otherwise a missing folder is an
        error.

    Returns
    -------
    folder : Path

    Raises
    ------
    UsageError
        The folder cannot be created or written to; the message says which and how to fix it.
    """
    folder = Path(folder) if str(folder) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"Invalid value for '{option}': '{folder}' is a file, not a folder; choose another path.")
    if not folder.exists():
        blocker = _first_existing(folder.parent)
        if blocker.exists() and not blocker.is_dir():
            raise UsageError(f"Invalid value for '{option}': '{blocker}' is a file, so no folder can be created "
                             f"under it; choose another path.")
        if not create:
            raise UsageError(f"Invalid value for '{option}': folder '{folder}' does not exist; create it or "
                             "choose another path.")
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"Invalid value for '{option}': cannot create folder '{folder}' "
                             f"({exc.strerror or exc}); choose a folder you can write to.") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".attune-probe-", dir=folder)
    except OSError as exc:
        raise UsageError(f"Invalid value for '{option}': cannot write into folder '{folder}' "
                         f"({exc.strerror or exc}); choose a folder you can write to.") from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return folder


def check_output_file(path, option: str, *, create_parents: bool = True, overwrite: bool = True) -> Path:
    """Check, before any work, that a result file can be written at ``path``.

    Parameters
    ----------
    path : str | Path
    option : str
        The command-line option (``"--json"``), for the message.
    create_parents : bool
        Create missing parent folders (mode 0700).
    overwrite : bool
        Whether an existing file may be replaced.

    Returns
    -------
    path : Path

    Raises
    ------
    UsageError
        ``path`` is a folder, exists (and ``overwrite`` is false), or its folder cannot be written to.
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"Invalid value for '{option}': '{path}' is a folder; give a file name (e.g. "
                         f"{path / 'out.json'}).")
    if path.exists() and not overwrite:
        raise UsageError(f"Invalid value for '{option}': '{path}' already exists; add --force to overwrite it or "
                         "choose another path.")
    check_writable_folder(path.parent, option, create=create_parents)
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"Invalid value for '{option}': '{path}' exists and cannot be overwritten (no write "
                         "permission); choose another path.")
    return path
