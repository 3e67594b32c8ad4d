"""Test-wide set-up.

The loopback-only LSL configuration is put in force here, at collection time,
before any test module (or Attune module) imports pylsl: liblsl reads its
configuration once per process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LSL_CONFIG = ROOT / "acquisition" / "lsl_api.cfg"

assert "pylsl" not in sys.modules, "pylsl was imported before tests/conftest.py set LSLAPICFG"
os.environ["LSLAPICFG"] = str(LSL_CONFIG)
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
