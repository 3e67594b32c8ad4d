"""Is there a display Qt can open a window on? Asked before Qt starts (no Qt import here).

Qt aborts the process (SIGABRT, exit code 134) when ``$DISPLAY`` names an X server that is not there
(``DISPLAY=:99`` with no server, a stale SSH forwarding): checking that the variable is set is not enough.
:func:`display_usable` connects to the display server's socket first, so a command can say so in one line and
fall back to the terminal view instead.
"""

from __future__ import annotations

import os
import socket
import sys

__all__ = ["HEADLESS_PLATFORMS", "CONNECT_TIMEOUT_S", "x11_reachable", "display_usable"]

#: Qt platforms that need no display server.
HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb")
#: Seconds to wait for a display server to accept a connection.
CONNECT_TIMEOUT_S = 1.0


def _connect_unix(path: str) -> str | None:
    """None when something accepts connections at the unix socket ``path`` (a leading NUL: abstract), else why not."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(CONNECT_TIMEOUT_S)
    try:
        s.connect(path)
        return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    finally:
        s.close()


def _connect_tcp(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def x11_reachable(display: str) -> tuple[bool, str]:
    """Whether an X server answers at ``display`` (``":0"``, ``"unix:1"``, ``"host:10.0"``, a socket path).

    Returns
    -------
    ok : bool
    where : str
        The socket tried and, when it failed, why.
    """
    if display.startswith("/"):   # XQuartz launchd socket: "/private/tmp/com.apple.launchd.xxx/org.xquartz:0"
        path = display
        why = _connect_unix(path)
        return why is None, f"{path}" + (f": {why}" if why else "")
    host, sep, rest = display.rpartition(":")
    if not sep:
        return False, f"{display!r} is not a display name (expected e.g. ':0' or 'host:10.0')"
    number = rest.split(".")[0]
    if not number.isdigit():
        return False, f"{display!r} is not a display name (expected e.g. ':0' or 'host:10.0')"
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"
        why = _connect_unix(path)
        if why is not None and sys.platform.startswith("linux"):
            if _connect_unix("\0" + path) is None:   # Xorg/Xvfb also listen in the abstract namespace
                return True, f"@{path}"
        return why is None, path + (f": {why}" if why else "")
    port = 6000 + int(number)
    why = _connect_tcp(host, port)
    return why is None, f"{host}:{port}" + (f": {why}" if why else "")


def display_usable(env=None) -> tuple[bool, str]:
    """Whether Qt can open windows here, and in words what was found.

    Parameters
    ----------
    env : mapping | None
        The environment to judge (default ``os.environ``).

    Returns
    -------
    ok : bool
        True for a headless Qt platform (``QT_QPA_PLATFORM=offscreen`` ...), on macOS and Windows, or when the
        Wayland compositor / X server named by ``$WAYLAND_DISPLAY`` / ``$DISPLAY`` accepts a connection.
    reason : str
        One line: what display was used, or why none is usable (for the message before the terminal view).
    """
    env = os.environ if env is None else env
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0]
    if platform in HEADLESS_PLATFORMS:
        return True, f"Qt platform {platform!r} (no display server needed)"
    if sys.platform in ("darwin", "win32"):
        return True, f"{sys.platform} desktop"
    wayland = env.get("WAYLAND_DISPLAY", "")
    display = env.get("DISPLAY", "")
    wayland_why = ""
    if wayland and platform in ("", "wayland", "wayland-egl"):
        path = wayland if wayland.startswith("/") else os.path.join(env.get("XDG_RUNTIME_DIR", "/run/user/0"), wayland)
        why = _connect_unix(path)
        if why is None:
            return True, f"Wayland display {wayland}"
        wayland_why = f"$WAYLAND_DISPLAY={wayland} is set but no compositor answers at {path} ({why})"
    if display:
        ok, where = x11_reachable(display)
        if ok:
            return True, f"X display {display}"
        x_why = f"$DISPLAY={display} is set but no X server answers ({where})"
        return False, f"{x_why}; {wayland_why}" if wayland_why else x_why
    if wayland_why:
        return False, wayland_why
    return False, "no $DISPLAY / $WAYLAND_DISPLAY"
