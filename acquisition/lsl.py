"""The one door to pylsl: ``from acquisition.lsl import pylsl``.

Importing this module makes sure an LSL configuration is in force (the
shipped loopback-only one, unless :func:`attune_monitor.acquisition.lslconfig.configure`
chose another) before pylsl loads liblsl.

It also holds :func:`stream_xml`, which reads a stream's header as ``pylsl.StreamInfo.as_xml()`` does, without
the leak of that method (Attune calls it for every stream on the machine every few seconds of a session).
"""

from __future__ import annotations

import ctypes
import os

from .lslconfig import configure

if "LSLAPICFG" not in os.environ:
    configure(None)

import pylsl  # noqa: E402  (must follow the configuration)
from pylsl.lib import lib as _liblsl  # noqa: E402

__all__ = ["pylsl", "stream_xml"]

# Function objects of our own (``CDLL[name]`` makes a new one each time): pylsl's ``lib.lsl_get_xml`` returns
# ``c_char_p``, whose conversion copies the text and drops the pointer, so liblsl's malloc'd copy is never freed.
_get_xml = _liblsl["lsl_get_xml"]
_get_xml.restype = ctypes.c_void_p
_get_xml.argtypes = [ctypes.c_void_p]
_destroy_string = _liblsl["lsl_destroy_string"]
_destroy_string.restype = None
_destroy_string.argtypes = [ctypes.c_void_p]


def stream_xml(info) -> str:
    """The whole ``<info>`` XML of a stream, as ``info.as_xml()`` returns it, freeing liblsl's copy.

    ``pylsl.StreamInfo.as_xml`` (pylsl 1.16-1.18) never hands back to liblsl the string ``lsl_get_xml`` allocates
    for it (``lsl_destroy_string``): every call keeps the header's size (hundreds of bytes, kilobytes with a
    desc) for the life of the process. Here the text is copied, then liblsl's string freed.

    Parameters
    ----------
    info : pylsl.StreamInfo

    Returns
    -------
    xml : str
        Decoded as pylsl decodes it: UTF-8, or Latin-1 when it is not valid UTF-8 (a hostname in a Windows code
        page).
    """
    ptr = _get_xml(info.obj)
    if not ptr:
        raise RuntimeError(f"liblsl returned no header for stream {info.name()!r}.")
    try:
        raw = ctypes.string_at(ptr)
    finally:
        _destroy_string(ptr)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
