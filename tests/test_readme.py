"""The README works as written: its Python example runs and prints what it says, every ``attune`` command it
shows is one the real parser accepts, and the documents' links lead somewhere.

The Python block runs in a subprocess from the repository's root, as a user would paste it; its output is
compared with the README's ``text`` block right after it. Commands are parsed by
:func:`attune_monitor.ui.cli.build_parser` (the parser ``attune`` itself uses), so a renamed option or command
fails here, not in a user's shell. The option table of ``docs/cli.md`` is checked against the same parser.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, ROOT / "hardware.md", ROOT / "recordings" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _fences(text: str) -> list[tuple[str, str, int]]:
    """``(language, body, end offset)`` of every fenced code block."""
    return [(m.group(1), m.group(2), m.end()) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M)]


def _shell_commands(text: str) -> list[str]:
    """``attune ...`` lines of the shell blocks (comments cut) and ``attune ...`` inline code spans.

    Spans that are syntax summaries (``[--x]``, ``a|b``, ``...``, ``<placeholder>`` with spaces) are not commands
    to run and are left out; a ``<placeholder>`` is replaced by a value.
    """
    cmds = []
    for lang, body, _ in _fences(text):
        if lang not in ("sh", "bash", "console", ""):
            continue
        for line in body.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("attune "):
                cmds.append(line)
    for span in re.findall(r"`(attune [^`]+)`", text):
        if not re.search(r"\[|\||\.\.\.|…|^attune [\w-]+:", span):  # syntax summaries, quoted messages
            cmds.append(span)
    return [re.sub(r"<[^>\s]+>", "X", c) for c in cmds]


def _parser():
    from attune_monitor.ui.cli import build_parser

    return build_parser()


def _subparsers(parser) -> dict:
    import argparse

    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def _options(sub) -> set[str]:
    """Every option string a (sub)parser accepts, nested sub-commands included."""
    opts = {s for a in sub._actions for s in a.option_strings}
    try:
        for child in _subparsers(sub).values():
            opts |= _options(child)
    except ValueError:  # no sub-commands
        pass
    return opts


def test_readme_is_a_short_user_guide():
    text = _text(README)
    assert len(text.splitlines()) <= 160, "README.md should stay a short guide; details go to docs/"
    for heading in ("## Install", "## Quick start", "## With real devices", "## Reading the screen",
                    "## Commands", "## Use from Python", "## How good are the flags?", "## Performance"):
        assert heading in text, heading
    assert "never a diagnosis" in text
    # a new shell has no `attune` on its PATH: the README must say both ways to reach it
    assert "source .venv/bin/activate" in text and ".venv/bin/attune" in text
    assert "py -3.11" in text and r".venv\Scripts" in text  # Windows
    # the flags' figures, plainly: real partners, strangers, and what was not met
    source = (ROOT / "docs" / "validation.md").read_text(encoding="utf-8").split("## Performance")[0]
    for figure in ("**0.19 prompts an hour**", "**0.02** (one in 41 h)", "F1 **0.53**", "AUC **0.57**"):
        assert figure in text, figure
        number = figure.replace("*", "").split()[0 if "prompts" in figure or "one in" in figure else -1]
        assert number in source, (figure, "not in docs/validation.md's 'The README's figures' section")
    for figure in ("10 of 13", "2 of 16"):  # real rupture timing (bench/coded_conflict.py)
        assert figure in text and figure in source, figure
    assert "docs/validation.md" in text


def test_readme_python_example_prints_what_the_readme_says():
    text = _text(README)
    blocks = _fences(text)
    pythons = [(i, body) for i, (lang, body, _) in enumerate(blocks) if lang == "python"]
    assert pythons, "README.md lost its Python example"
    for i, code in pythons:
        lang, expected, _ = blocks[i + 1]
        assert lang == "text", "each README Python block is followed by a ```text block with what it prints"
        env = {**os.environ, "LSLAPICFG": str(ROOT / "acquisition" / "lsl_api.cfg")}
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=110)
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = [ln.rstrip() for ln in proc.stdout.strip().splitlines()]
        assert got == [ln.rstrip() for ln in expected.strip().splitlines()], proc.stdout


def test_readme_command_table_lists_exactly_the_cli_commands():
    text = _text(README)
    table = text[text.index("## Commands"):]
    table = table[:table.index("\n## ")]
    named = {m.split()[1] for m in re.findall(r"^\| `(attune [\w-]+)", table, re.M)}
    assert named == set(_subparsers(_parser())), named


@pytest.mark.parametrize("doc", [README, ROOT / "recordings" / "README.md", ROOT / "hardware.md",
                                 ROOT / "docs" / "install.md"], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_attune_command_in_the_docs_parses(doc):
    """Each command a user would copy from the document is accepted by ``attune``'s own parser."""
    parser = _parser()
    cmds = _shell_commands(_text(doc))
    if doc == README:
        assert len(cmds) >= 15, cmds
    bad = []
    for cmd in cmds:
        argv = shlex.split(cmd)[1:]
        if argv in (["--help"], ["-h"]):
            continue
        if len(argv) == 1:  # the command named in a sentence ("`attune analyze` of a dyad"): it must exist
            if argv[0] not in _subparsers(parser):
                bad.append((cmd, "no such command"))
            continue
        try:
            parser.parse_args(argv)
        except SystemExit as exc:  # argparse's error (2); --help would be 0 and is not used in the docs
            bad.append((cmd, exc.code))
    assert not bad, bad


def test_cli_reference_names_only_real_options():
    """docs/cli.md's table: each row's command exists, and every --option in it is one that command accepts."""
    subs = _subparsers(_parser())
    rows = re.findall(r"^\| `attune ([\w-]+)([^`]*)`", _text(ROOT / "docs" / "cli.md"), re.M)
    assert {name for name, _ in rows} == set(subs)
    for name, rest in rows:
        opts = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest))
        assert opts <= _options(subs[name]), (name, opts - _options(subs[name]))


def test_make_targets_named_in_the_docs_exist():
    makefile = _text(ROOT / "Makefile")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    for doc in DOCS:
        for target in re.findall(r"`make (\w+)`", _text(doc)) + re.findall(r"^make (\w+)", _text(doc), re.M):
            assert target in targets, (doc.name, target)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (not ``-``), spaces to ``-``."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```$", "", _text(path), flags=re.S | re.M)  # headings inside code blocks do not count
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_lead_to_files_and_headings_that_exist(doc):
    text = re.sub(r"^```.*?^```$", "", _text(doc), flags=re.S | re.M)
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            bad.append(target)
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            bad.append(target)
    assert not bad, bad
