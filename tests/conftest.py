"""Test-wide set-up.

The loopback-only LSL configuration is put in force here, at collection time,
before any test module (or Attune module) imports pylsl: liblsl reads its
configuration once per process.

Each pytest process runs in its own LSL session: the configuration in force is a
copy of ``acquisition/lsl_api.cfg`` with ``[lab] SessionID =
attune-test-<worker>-<pid>`` (worker: pytest-xdist's ``gw0``, ``gw1`` ..., or
``main`` without xdist), written to a temporary folder as ``lsl_api.cfg``.
liblsl (pylsl's and mne-lsl's) answers a resolver only for outlets of its own
SessionID, so the streams of one xdist worker are never seen by another
worker's resolvers, nor by another test run on this computer
(tests/acquisition/test_lsl_session_isolation.py). Every child process a test
starts inherits ``LSLAPICFG`` from ``os.environ`` and so joins the same session.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LSL_CONFIG = ROOT / "acquisition" / "lsl_api.cfg"

assert "pylsl" not in sys.modules, "pylsl was imported before tests/conftest.py set LSLAPICFG"


def session_config_text(session_id: str) -> str:
    """The shipped ``lsl_api.cfg`` with ``SessionID = session_id`` added to its ``[lab]`` section."""
    text = LSL_CONFIG.read_text()
    if "\n[lab]\n" not in text:
        raise RuntimeError(f"{LSL_CONFIG} has no [lab] section to add the test SessionID to; add '[lab]' back")
    return text.replace("\n[lab]\n", f"\n[lab]\nSessionID = {session_id}\n", 1)


def _use_own_lsl_session() -> str:
    """Write this process's session config and point ``LSLAPICFG`` at it; return its SessionID."""
    session_id = f"attune-test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{os.getpid()}"
    current = os.environ.get("LSLAPICFG")
    if current and Path(current).name == "lsl_api.cfg" and Path(current).parent.name.startswith(session_id + "-"):
        return session_id  # this module imported a second time (e.g. as tests.conftest): keep the one config
    folder = Path(tempfile.mkdtemp(prefix=f"{session_id}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / "lsl_api.cfg").write_text(session_config_text(session_id))
    os.environ["LSLAPICFG"] = str(folder / "lsl_api.cfg")
    return session_id


#: This process's LSL SessionID (its resolvers see only outlets of the same one).
LSL_SESSION_ID = _use_own_lsl_session()
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: Real recordings from other projects (absent in a user's fresh clone).
REALDATA = ROOT.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Path to ``../shared/realdata``; skips the test when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real recordings not available: {REALDATA} is absent (only in the project's CI/dev checkout)")
    return REALDATA


@pytest.fixture
def rng():
    """A seeded generator, so every random test is repeatable."""
    import numpy as np

    return np.random.default_rng(20261125)
