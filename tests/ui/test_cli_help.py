"""What ``attune <command> --help`` says about each option is what the code does.

* A default the help states ("default 15", "(default: the GUI's setting, else 30)", "balanced (default)") is the
  value argparse uses, or, for an option left unset that falls back on the pipeline's setting, the value the
  session really gets (``session_settings`` without a GUI). A number-valued option states its default.
* A range the help states ("between 6 and 120", "a positive number", "1 or more") is what the validator accepts,
  probed through the real entry point ``ui.cli.main``: the bounds (and a value just inside) pass the check, a
  value just outside (and NaN) is exit 2 with exactly one stderr line naming the option and saying the same range.
  A numeric option whose help states no range has no validator that refuses -1, 0 or a large value.
* Ranges are worded one way ("between A and B"), every ``--lsl-scope`` offers the scopes liblsl is configured
  for, and no command module imports another's private helpers.

The probes run each command with an argument that fails fast *after* the option checks (a roster, scenario or
recording that does not exist), so a value that passes the check never starts a session, a simulator or a scan.
"""

from __future__ import annotations

import argparse
import ast
import math
import re
from pathlib import Path

import pytest

from attune_monitor.ui.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
#: Paths that do not exist: each command's base arguments fail on them after the option checks.
MISSING = Path("/nonexistent-attune-probe")
#: Per command: arguments that end in a usage error after every option has been checked.
BASES = {
    ("demo",): ["demo", "--headless", "--scenario", str(MISSING / "scenario.toml")],
    ("simulate",): ["simulate", "--scenario", str(MISSING / "scenario.toml")],
    ("streams",): ["streams", "--roster", str(MISSING / "roster.toml")],
    ("monitor",): ["monitor", "--headless", "--roster", str(MISSING / "roster.toml")],
    ("analyze",): ["analyze", str(MISSING / "x.xdf"), "--roster", str(MISSING / "roster.toml")],
    ("evaluate",): ["evaluate", str(MISSING)],
    ("replay",): ["replay", str(MISSING / "x.xdf"), "--headless"],
    ("export",): ["export", str(MISSING / "x.xdf"), "--format", "csv", "--out", str(MISSING / "out")],
    ("bridge", "ble-hr"): ["bridge", "ble-hr"],  # no --participant: refused after the checks (never scans)
}

BETWEEN = re.compile(r"\bbetween (-?\d+(?:\.\d+)?) and (-?\d+(?:\.\d+)?)\b")
POSITIVE = re.compile(r"\bpositive\b")
OR_MORE = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?) or more\b")
#: Other range wordings ("5-120", "1 .. 16", "2 to 8", "(0, 64]", ">= 0"): the help says ranges one way.
OTHER_RANGE = re.compile(r"\d\s*(?:-|\.\.|to)\s*\d|[(\[]\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?\s*[)\]]|[<>]=?\s*\d")
STATED_DEFAULT = re.compile(r"\bdefault(?::| is)? +(?P<text>[^;,)]+)")
CHOICE_DEFAULT = re.compile(r"(?P<value>[\w.-]+) \(default\)")
ELSE_DEFAULT = re.compile(r"\belse (?P<value>[^\s;,)]+)")
COMMA_DEFAULT = re.compile(r"\((?P<value>[\w.-]+), default\)")


def _options() -> list[tuple[tuple, argparse.Action, str]]:
    """``(command path, action, rendered help)`` for every documented option of every subcommand."""
    found = []

    def walk(parser: argparse.ArgumentParser, path: tuple) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*path, name))
            elif (path and action.option_strings and action.help not in (None, argparse.SUPPRESS)
                  and not isinstance(action, argparse._HelpAction)):
                found.append((path, action, parser._get_formatter()._expand_help(action)))

    walk(build_parser(), ())
    return found


OPTIONS = _options()
NUMERIC = [o for o in OPTIONS if o[1].type in (int, float)]


def _id(option) -> str:
    path, action, _ = option
    return " ".join((*path, action.option_strings[-1]))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _session_fallbacks() -> dict[str, str]:
    """What an unset ``--preset`` / ``--window`` / ``--signals`` becomes without a GUI (the code, not the help)."""
    from attune_monitor.ui.commands.options import session_settings

    def settings(**given):
        args = argparse.Namespace(**{"preset": None, "window": None, "signals": None, **given})
        return session_settings(args, gui=False)

    config, modalities, _ = settings()
    signals = [c for c in ("both", "heart", "skin") if settings(signals=c)[1] == modalities]
    return {"--window": f"{config.window_s:g}", "--preset": config.preset, "--signals": signals[0]}


@pytest.mark.parametrize("option", OPTIONS, ids=_id)
def test_stated_default_is_the_default_used(option):
    """A default the help states is the one argparse (or, for an unset session option, the pipeline) uses."""
    path, action, text = option
    name = action.option_strings[-1]
    stated = STATED_DEFAULT.search(text)
    if action.type in (int, float) and action.default is not None:
        assert stated, f"{_id(option)}: the help does not state its default {action.default!r}: {text!r}"
    choice = CHOICE_DEFAULT.search(text)
    if choice:
        assert choice["value"] == str(action.default), (_id(option), text, action.default)
    if not stated:
        return
    said = stated["text"].split(": ")[0].strip().rstrip(":").strip("'\"")
    first = said.split()[0] if said.split() else said
    if action.nargs == "?" and action.const is not None:  # FLAG alone uses const: the help's "default" is that
        assert any(w.rstrip("/") == str(action.const) for w in said.split()), (_id(option), said, action.const)
        return
    if action.default is not None:
        if isinstance(action.default, (int, float)) and not isinstance(action.default, bool):
            assert _number(first) == action.default, f"{_id(option)}: help says default {first!r}, code uses " \
                                                     f"{action.default!r}"
        else:
            assert said == str(action.default), f"{_id(option)}: help says default {said!r}, code uses " \
                                                f"{action.default!r}"
        return
    assert _number(first) is None, f"{_id(option)}: help says default {first!r}, but argparse's default is None"
    fallback = ELSE_DEFAULT.search(text, stated.start())
    if fallback:
        code = _session_fallbacks().get(name)
        assert code is not None, f"{_id(option)}: states a fallback ({fallback['value']!r}) nobody checks"
        assert fallback["value"] == code, f"{_id(option)}: help says 'else {fallback['value']}', the code uses {code}"


#: Options whose default is "nothing given" (an empty list, a flag that is off): no default to state.
def _has_default(action: argparse.Action) -> bool:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._CountAction)):
        return False
    return action.default not in (None, False, argparse.SUPPRESS) and action.default != []


@pytest.mark.parametrize("option", [o for o in OPTIONS if _has_default(o[1])], ids=_id)
def test_every_default_is_stated_and_is_the_one_used(option):
    """Every option with a default (numbers, choices, words) says it in its help, and says the one argparse uses."""
    _, action, text = option
    choice = CHOICE_DEFAULT.search(text) or COMMA_DEFAULT.search(text)
    stated = STATED_DEFAULT.search(text)
    assert choice or stated, f"{_id(option)}: the help does not state its default {action.default!r}: {text!r}"
    if choice:
        assert choice["value"] == str(action.default), (_id(option), text, action.default)
    else:
        said = stated["text"].split(": ")[0].strip().rstrip(":").strip("'\"")
        first = said.split()[0] if said.split() else said
        want = f"{action.default:g}" if isinstance(action.default, float) else str(action.default)
        assert first.rstrip("/") in (want, str(action.default)), (_id(option), said, action.default)


def _probe(argv: list[str], capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(argv)
    return code, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def _fmt(value) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


@pytest.mark.parametrize("option", NUMERIC, ids=_id)
def test_stated_range_is_what_the_validator_accepts(option, capsys):
    """Bounds pass, values just outside and NaN are one line naming the option; no range stated, none enforced."""
    path, action, text = option
    name = action.option_strings[-1]
    assert path in BASES, f"no probe arguments for `attune {' '.join(path)}`: add them to BASES"
    base = BASES[path]
    integer = action.type is int

    def refused(value) -> tuple[bool, list[str]]:
        code, lines = _probe([*base, name, _fmt(value)], capsys)
        return code == 2 and any(f"'{name}'" in ln for ln in lines), lines

    def assert_refused(value, wording: str) -> None:
        code, lines = _probe([*base, name, _fmt(value)], capsys)
        assert code == 2 and len(lines) == 1 and f"'{name}'" in lines[0], \
            f"{_id(option)} {_fmt(value)}: expected one line naming {name}, got exit {code}: {lines}"
        assert wording in lines[0] and "but got" in lines[0], f"{_id(option)}: the message says {lines[0]!r}"

    def assert_accepted(value) -> None:
        bad, lines = refused(value)
        assert not bad, f"{_id(option)} {_fmt(value)}: refused although the help allows it: {lines}"

    eps = (lambda b: 1) if integer else (lambda b: max(1e-3, abs(b) * 1e-3))
    between, positive, or_more = BETWEEN.search(text), POSITIVE.search(text), OR_MORE.search(text)
    assert not OTHER_RANGE.search(text), f"{_id(option)}: say a range as 'between A and B': {text!r}"
    if between:
        lo, hi = (action.type(float(v)) if integer else float(v) for v in between.groups())
        wording = f"between {lo:g} and {hi:g}"
        for v in (lo, hi, (lo + hi) / 2 if not integer else lo + 1):
            assert_accepted(v)
        assert_refused(lo - eps(lo), wording)
        assert_refused(hi + eps(hi), wording)
    elif positive:
        wording = "positive"
        assert_accepted(1 if integer else 1e-3)
        assert_refused(0, wording)
        assert_refused(-1, wording)
    elif or_more:
        lo = float(or_more.group(1))
        wording = f"{lo:g} or more"
        assert_accepted(int(lo) if integer else lo)
        assert_refused(int(lo) - 1 if integer else lo - eps(lo), wording)
    else:
        for v in (-1, 0, 10**6):
            bad, lines = refused(v)
            assert not bad, f"{_id(option)}: the help states no range, but {v} is refused: {lines}"
        return
    if not integer:
        assert_refused(math.nan, wording)


def test_probe_bases_fail_after_the_option_checks(capsys):
    """The probes' base arguments end in one usage error that names no numeric option (the premise above)."""
    for path, base in BASES.items():
        code, lines = _probe(base, capsys)
        assert code == 2 and len(lines) == 1, (path, code, lines)
        assert not any(f"'{a.option_strings[-1]}'" in lines[0] for p, a, _ in NUMERIC if p == path), lines


def test_scopes_and_signals_have_one_home():
    """Every --lsl-scope offers acquisition.lslconfig's scopes; --signals the session options' choices."""
    from attune_monitor.acquisition.lslconfig import SCOPES
    from attune_monitor.ui.commands.options import SIGNALS

    scopes = [a for _, a, _ in OPTIONS if a.option_strings[-1] == "--lsl-scope"]
    signals = [a for _, a, _ in OPTIONS if a.option_strings[-1] == "--signals"]
    assert len(scopes) >= 4 and all(tuple(a.choices) == SCOPES for a in scopes)
    assert len(signals) >= 3 and all(tuple(a.choices) == tuple(SIGNALS) for a in signals)


def test_no_command_imports_another_commands_private_names():
    """Shared helpers live in ui/commands/options.py, not in one command that the others reach into."""
    folder = ROOT / "ui" / "commands"
    commands = {p.stem for p in folder.glob("*.py")} - {"__init__", "options"}
    offences = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in commands:
                offences += [f"{path.name}: from .{node.module} import {a.name}" for a in node.names
                             if a.name.startswith("_")]
    assert not offences, offences
