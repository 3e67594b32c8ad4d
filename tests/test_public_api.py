"""The public API a researcher uses from a notebook (issue 19).

* the example in ``attune_monitor``'s docstring runs as written and finds the episodes ``attune analyze --json``
  writes for the same file;
* every public module (walked with pkgutil) has an ``__all__`` and every name in it resolves (the lazy ones to
  the object of their home module); no module imports another's private name;
* ``import attune_monitor.dsp`` loads neither Qt, pylsl, the acquisition layer nor scipy.signal;
* every domain exception is an :class:`attune_monitor.errors.AttuneError`.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import io
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import attune_monitor

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "recordings" / "sample-couple.xdf"

#: The packages whose modules are walked (the three layers are mapped into attune_monitor by package-dir, so
#: walking attune_monitor's own folder would not find them).
PACKAGES = ("attune_monitor", "attune_monitor.acquisition", "attune_monitor.dsp", "attune_monitor.ui")


def public_modules() -> list[str]:
    """Every public module of the distribution: each package and every module under it (pkgutil.iter_modules,
    recursively) whose name has no part starting with ``_`` (the GUI's modules too: Qt runs offscreen in tests)."""
    names = []

    def walk(pkg: str, folder: str) -> None:
        names.append(pkg)
        for info in pkgutil.iter_modules([folder], pkg + "."):
            if info.name.rsplit(".", 1)[1].startswith("_"):
                continue
            if info.ispkg:
                sub = os.path.join(folder, info.name.rsplit(".", 1)[1])
                if os.path.exists(os.path.join(sub, "__init__.py")):  # not a data folder (acquisition/scenarios)
                    walk(info.name, sub)
            else:
                names.append(info.name)

    for pkg in PACKAGES:
        # the package's own folder only: attune_monitor's __path__ also holds the repository root (package-dir)
        walk(pkg, importlib.import_module(pkg).__path__[0])
    return sorted(dict.fromkeys(names))


PUBLIC_MODULES = public_modules()
#: Packages whose modules (or data files) are what they hold, nothing of their own to export: an empty ``__all__``.
EMPTY_ALL = {"attune_monitor.ui", "attune_monitor.ui.commands", "attune_monitor.ui.gui",
             "attune_monitor.acquisition.scenarios"}


def test_the_walk_finds_every_layer_and_the_gui():
    for name in ("attune_monitor.analysis", "attune_monitor.errors", "attune_monitor.acquisition.convention",
                 "attune_monitor.dsp.limits", "attune_monitor.ui.commands.options", "attune_monitor.ui.gui.app"):
        assert name in PUBLIC_MODULES
    files = {p for layer in ("acquisition", "dsp", "ui") for p in (ROOT / layer).rglob("*.py")
             if not any(part.startswith("_") and part != "__init__.py" for part in p.relative_to(ROOT).parts)}
    assert len(PUBLIC_MODULES) >= len(files) + 1  # + attune_monitor itself


def test_no_module_imports_a_private_name_of_another():
    """``from .x import _name`` across modules is what __all__ and public names are for (a private *module*,
    such as ``dsp._kernels``, may be imported inside its package)."""
    found = []
    for layer in ("acquisition", "dsp", "ui", "attune_monitor"):
        for path in (ROOT / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ImportFrom) or node.module == "__future__":
                    continue
                if node.level == 0 and not (node.module or "").startswith("attune_monitor"):
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and alias.name != "__version__":
                        if node.level:
                            base = path.parents[node.level - 1] / (node.module or "").replace(".", "/")
                            is_module = (base / f"{alias.name}.py").exists() or (base / alias.name).is_dir()
                        else:
                            is_module = importlib.util.find_spec(f"{node.module}.{alias.name}") is not None
                        if not is_module:
                            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {alias.name}")
    assert found == []


def docstring_example() -> str:
    """The literal block after 'Use from Python' in the package docstring, dedented."""
    doc = attune_monitor.__doc__
    start = doc.index("Use from Python")
    body = doc[doc.index("::\n", start) + 3:]
    lines = []
    for line in body.splitlines():
        if line.strip() and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip() + "\n"


def test_docstring_example_runs_and_gives_the_episodes_of_attune_analyze(tmp_path, monkeypatch):
    code = docstring_example()
    assert "read_recording" in code and "rolling_pearson" in code
    monkeypatch.chdir(ROOT)  # the example reads recordings/sample-couple.xdf, as the docstring says
    out, ns = io.StringIO(), {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "attune_monitor example", "exec"), ns)
    printed = out.getvalue().splitlines()

    # the reference: the command line, in its own process, on the same file
    doc = tmp_path / "sample.json"
    env = dict(os.environ, LSLAPICFG=str(ROOT / "acquisition" / "lsl_api.cfg"))
    run = subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", "analyze", str(SAMPLE), "--json", str(doc)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    expected = json.loads(doc.read_text())["episodes"]
    assert expected, "the sample couple recording has possible ruptures"

    analysis, recording = ns["analysis"], ns["recording"]
    offset = analysis.origin - recording.origin  # the document counts from the file's earliest timestamp
    got = sorted((list(ep.pair), round(ep.onset_s + offset, 2), ep.outcome) for ep in analysis.episodes)
    want = sorted((ep["pair"], round(ep["onset_s"], 2), ep["outcome"]) for ep in expected)
    assert got == want
    # one printed line per episode, with its pair and onset, then the rolling-Pearson line
    lines = [s for s in printed if "possible rupture" in s]
    assert len(lines) == len(expected)
    for line, ep in zip(lines, sorted(analysis.episodes, key=lambda e: e.onset_s)):
        assert line.startswith(f"{ep.pair[0]}-{ep.pair[1]}: possible rupture from {ep.onset_s:.0f} s")

    # rolling Pearson of the two planted signals: window 0 equals numpy's r of its 30 s (120 samples)
    m, a, b, fs = ns["m"], ns["a"], ns["b"], ns["fs"]
    assert m.values.shape == (1, int((a.size - 30 * fs) // fs) + 1)  # one pair, one window a second
    win = int(30 * fs)
    for j in (0, 17, m.values.shape[1] - 1):
        s = j * int(fs)
        assert m.values[0, j] == pytest.approx(np.corrcoef(a[s:s + win], b[s:s + win])[0, 1], abs=1e-9)
    median = float(re.search(r"median r = (-?[0-9.]+)", printed[-1]).group(1))
    assert median == pytest.approx(np.median(m.values[0]), abs=0.005) and median > 0.8  # b = a + 0.3 noise


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_name_in_all_resolves(name):
    mod = importlib.import_module(name)
    assert isinstance(mod.__all__, list | tuple), f"{name} has no __all__"
    assert bool(mod.__all__) != (name in EMPTY_ALL), f"{name}.__all__ = {mod.__all__!r}"
    assert len(set(mod.__all__)) == len(mod.__all__), f"{name}.__all__ lists a name twice"
    for attr in mod.__all__:
        assert getattr(mod, attr) is not None or attr.isupper(), f"{name}.{attr}"
    with pytest.raises(AttributeError):
        mod.no_such_name_in_attune  # noqa: B018 - the lazy __getattr__ refuses unknown names


def test_lazy_names_are_the_objects_of_their_home_modules():
    from attune_monitor import acquisition, analysis, dsp, errors
    from attune_monitor.acquisition import files
    from attune_monitor.dsp import detector, engine, pipeline, synchrony

    assert acquisition.read_recording is files.load_recording is acquisition.load_recording
    assert attune_monitor.read_recording is files.load_recording
    assert attune_monitor.analyze_recording is analysis.analyze_recording is dsp.analyze_recording
    assert attune_monitor.AttuneError is errors.AttuneError
    assert dsp.rolling_pearson is synchrony.rolling_pearson and dsp.windowed_xcorr is synchrony.windowed_xcorr
    assert dsp.shifted_surrogate is synchrony.shifted_surrogate
    assert dsp.SynchronyEngine is engine.SynchronyEngine and dsp.PipelineConfig is pipeline.PipelineConfig
    assert dsp.get_preset is detector.get_preset
    # the old homes still give the moved names (callers outside this change keep working)
    from attune_monitor import evaluation
    from attune_monitor.ui import runner
    from attune_monitor.ui.commands import evaluate

    assert runner.analyze_recording is analysis.analyze_recording and runner.Analysis is analysis.Analysis
    assert evaluate.score_file is evaluation.score_file and evaluate.aggregate is evaluation.aggregate


def test_pair_states_are_a_str_enum_equal_to_their_words():
    from attune_monitor.dsp.detector import STATE_WORDS, STATES, UNARMED_STATES, PairState

    assert STATES == tuple(PairState) and len(STATES) == 8
    assert PairState.POSSIBLE_RUPTURE == "possible_rupture" and json.dumps(PairState.ATTUNED) == '"attuned"'
    assert f"{PairState.REPAIRED}" == "repaired" and set(STATE_WORDS) == set(STATES)
    assert "calibrating" in UNARMED_STATES


def test_import_dsp_loads_no_qt_lsl_acquisition_or_scipy_signal():
    code = ("import json, sys; import attune_monitor.dsp; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pylsl', 'scipy') "
            "or m.startswith('attune_monitor.acquisition'))))")
    env = dict(os.environ, LSLAPICFG=str(ROOT / "acquisition" / "lsl_api.cfg"))
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    loaded = json.loads(run.stdout)
    assert not [m for m in loaded if m.startswith(("PySide6", "pylsl", "attune_monitor.acquisition"))], loaded
    assert "scipy.signal" not in loaded, loaded


def test_every_domain_exception_is_an_attune_error():
    from attune_monitor.acquisition.ble_hr import BluetoothUnavailable, GaveUp, MalformedPacket
    from attune_monitor.acquisition.files import RecordingError
    from attune_monitor.acquisition.roster import RosterError
    from attune_monitor.acquisition.scenario import ScenarioError
    from attune_monitor.acquisition.xdf_writer import XdfWriteError
    from attune_monitor.errors import AttuneError
    from attune_monitor.ui.errors import UsageError

    for cls in (RecordingError, RosterError, ScenarioError, XdfWriteError, MalformedPacket, BluetoothUnavailable,
                GaveUp, UsageError):
        assert issubclass(cls, AttuneError), cls
    # the old bases stay: callers that catch ValueError / OSError still do
    assert issubclass(RosterError, ValueError) and issubclass(ScenarioError, ValueError)
    assert issubclass(XdfWriteError, OSError)


def test_the_cli_says_an_attune_error_in_one_line_with_exit_code_2(capsys):
    from attune_monitor.ui.cli import main

    missing = ROOT / "no-such-scenario.toml"
    assert main(["simulate", "--scenario", str(missing), "--duration", "60"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("attune simulate: error: ") and str(missing) in err[0]


def test_version_is_the_installed_distributions_and_read_lazily():
    """``attune_monitor.__version__`` is the installed distribution's; importing the package does not read it."""
    code = ("import sys, attune_monitor; before = 'importlib.metadata' in sys.modules; "
            "from importlib.metadata import version; "
            "print(before, attune_monitor.__version__ == version('attune-monitor'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
