"""A simulated session through the user's commands: ``attune simulate --out --truth``, ``attune analyze --json``."""

from __future__ import annotations

import json
from pathlib import Path


def simulate_and_analyze(folder: Path, scenario: str | Path, seed: int) -> tuple[dict, dict]:
    """Simulate ``scenario`` (a built-in's name or a TOML path) with ``seed`` into ``folder`` and analyse it.

    Returns ``(truth, analysis)``: the ``attune.truth/1`` and the analysis JSON documents.
    """
    from attune_monitor.ui.cli import main

    xdf, truth = folder / f"s{seed}.xdf", folder / f"s{seed}.truth.json"
    assert main(["simulate", "--scenario", str(scenario), "--seed", str(seed), "--out", str(xdf),
                 "--truth", str(truth)]) == 0
    out = folder / f"s{seed}.analysis.json"
    assert main(["analyze", str(xdf), "--json", str(out)]) == 0
    return json.loads(truth.read_text()), json.loads(out.read_text())
