"""The usable-display check before Qt starts (ui/gui/display.py): a $DISPLAY with no X server behind it is not
a display (Qt aborts on it, exit code 134); real listening sockets (unix, abstract, TCP) are.

Known truth: sockets this test opens itself, and display numbers where nothing listens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from attune_monitor.ui.gui.display import display_usable, x11_reachable

ROOT = Path(__file__).resolve().parents[2]


def _free_display_number() -> int:
    """A display number with no X server (no socket file, nothing in the abstract namespace, no TCP port)."""
    for n in range(173, 400):
        path = f"/tmp/.X11-unix/X{n}"
        if os.path.exists(path):
            continue
        if sys.platform.startswith("linux"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect("\0" + path)
                continue
            except OSError:
                pass
            finally:
                s.close()
        return n
    pytest.skip("no free X display number found")


def test_display_without_a_server_is_not_usable():
    n = _free_display_number()
    ok, why = display_usable({"DISPLAY": f":{n}"})
    assert not ok and f"$DISPLAY=:{n} is set but no X server answers" in why and f"X{n}" in why
    assert display_usable({}) == (False, "no $DISPLAY / $WAYLAND_DISPLAY")
    ok, why = display_usable({"DISPLAY": "nonsense"})
    assert not ok and "not a display name" in why
    # an explicit headless platform needs no server, whatever $DISPLAY says
    assert display_usable({"DISPLAY": f":{n}", "QT_QPA_PLATFORM": "offscreen"})[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract unix sockets are Linux-only")
def test_listening_x_sockets_are_usable():
    n = _free_display_number()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(f"\0/tmp/.X11-unix/X{n}")   # the abstract name Xorg/Xvfb also listen on: nothing on disk
    srv.listen(1)
    try:
        ok, why = display_usable({"DISPLAY": f":{n}.0"})
        assert ok and why == f"X display :{n}.0"
        assert x11_reachable(f"unix:{n}")[0]
    finally:
        srv.close()
    assert not display_usable({"DISPLAY": f":{n}"})[0]   # closed again: not usable
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    if port <= 6000:
        tcp.close()
        pytest.skip("the kernel gave a port below 6000")
    tcp.listen(1)
    try:
        assert x11_reachable(f"127.0.0.1:{port - 6000}") == (True, f"127.0.0.1:{port}")
    finally:
        tcp.close()


def test_demo_with_an_unusable_display_falls_back_to_the_terminal_view():
    """`attune demo` with DISPLAY=:N and no server: the terminal view, not Qt's abort (rc 134)."""
    n = _free_display_number()
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env["DISPLAY"] = f":{n}"
    proc = subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", "demo", "--speed", "8", "--duration", "4"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "terminal view" in proc.stderr and "Traceback" not in proc.stderr
    assert "learning baseline" in proc.stdout or "arousal:" in proc.stdout   # the terminal view ran
