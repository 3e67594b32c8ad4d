"""``attune --help`` starts fast: no command imports numpy, scipy, pylsl, Qt or MNE to build its parser.

The parsers of every command are built for any ``attune`` call, so what a command's ``register()`` imports
is paid by ``attune --help`` and by every other command. The robust check is what is loaded after parsing
(``sys.modules``); the wall time is measured too, as whole processes (best of several runs, with a bound
generous enough for a loaded 2-core CI machine: on an idle one it is ~0.1 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from attune_monitor.ui.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]

#: What no ``--help`` may import (each costs 0.1-1.5 s to import; scipy.signal alone ~0.9 s).
HEAVY = ("numpy", "scipy", "pylsl", "PySide6", "mne", "numba", "matplotlib", "pyqtgraph", "pyxdf", "mne_lsl",
         "pandas", "dask", "bleak", "edfio")

#: Parses ``sys.argv[1:]`` as ``attune`` does (``--help`` prints and ends the parse), then lists the heavy
#: modules loaded.
_PARSE = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from attune_monitor.ui import cli
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = cli.main(sys.argv[1:])
    heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(HEAVY)))
    print(json.dumps({"code": code, "help": out.getvalue(), "heavy": heavy}))
    """
).replace("json.loads(HEAVY)", repr(list(HEAVY)))

#: Bound (s) on the best whole-process time of ``attune [COMMAND] --help`` (target 0.3 s on an idle machine).
BOUND_S = 0.6


def _env() -> dict:
    # byte-code cached as an installed package has it (the CI image sets PYTHONDONTWRITEBYTECODE)
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _parse(*argv: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PARSE, *argv], capture_output=True, text=True, timeout=60,
                         env=_env(), cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


def _best_wall_s(argv: list[str], runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", *argv], capture_output=True,
                             text=True, timeout=60, env=_env(), cwd=ROOT)
        best = min(best, time.perf_counter() - t0)
        assert out.returncode == 0 and "usage: attune" in out.stdout, out.stderr[-2000:]
    return best


@pytest.mark.parametrize("argv", [["--help"], *([c, "--help"] for c in COMMANDS), ["bridge", "ble-hr", "--help"]],
                         ids=lambda a: " ".join(a))
def test_help_imports_nothing_heavy(argv):
    got = _parse(*argv)
    assert got["code"] == 0 and "usage: attune" in got["help"]
    assert got["heavy"] == [], f"'attune {' '.join(argv)}' imported {got['heavy']}: import them in run(), not register()"


def test_every_command_is_registered():
    """The parser has every command of COMMANDS (a command module that failed to import would be left out)."""
    text = _parse("--help")["help"]
    for name in COMMANDS:
        assert f"    {name} " in text or f"    {name}\n" in text, name


def test_attune_help_is_fast():
    best = _best_wall_s(["--help"])
    assert best <= BOUND_S, f"'attune --help' took {best:.2f} s at best of 5 (target 0.3 s)"


def test_each_command_help_is_fast():
    slow = {c: t for c in COMMANDS if (t := _best_wall_s([c, "--help"], runs=3)) > BOUND_S}
    assert not slow, f"slow 'attune COMMAND --help' (best of 3, s): {slow}"


def test_preset_names_are_the_detectors():
    """The parsers' --preset choices (options.PRESET_NAMES, kept so that --help needs no DSP) are the presets."""
    from attune_monitor.dsp.detector import PRESETS
    from attune_monitor.ui.commands.options import DEFAULT_PRESET, PRESET_NAMES

    assert PRESET_NAMES == tuple(PRESETS) and DEFAULT_PRESET in PRESET_NAMES
