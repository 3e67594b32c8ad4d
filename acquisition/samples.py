"""The sample sessions shipped in ``recordings/``, regenerated deterministically.

``python -m acquisition.samples recordings`` (``make recordings``) writes, with
fixed seeds, simulated sessions as XDF (the layout LabRecorder writes) and
their ground truth (scripted ruptures, repairs and confounds, in session
seconds; ``time_origin`` is the LSL time of session second 0)::

    recordings/sample-couple.xdf        2 people, 300 s, a rupture and its repair
    recordings/sample-couple.truth.json
    recordings/sample-group.xdf         3 people, 240 s, P1 climbs alone (aversive rupture 90-135 s)
    recordings/sample-group.truth.json

``--check`` regenerates into a temporary folder and fails when the shipped
files differ (byte for byte).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["SAMPLES", "MAX_BYTES", "write_sample", "write_all", "main"]

logger = logging.getLogger(__name__)

#: name -> (scenario, seed). Each file stays under 1.6 MB (the couple: 9 min with raw ECG and PPG).
SAMPLES = {
    "sample-couple": ("couple-rupture-repair", 3),
    "sample-group": ("group-rupture", 2),
}

#: Largest size a shipped sample may have (bytes).
MAX_BYTES = 1_600_000


def write_sample(name: str, folder) -> tuple[Path, Path]:
    """Simulate and write one sample session; returns ``(xdf path, truth path)``."""
    from .physiology import simulate_session
    from .scenario import load_scenario
    from .simulator import XDF_TIME_ORIGIN, write_session_xdf

    if name not in SAMPLES:
        raise ValueError(f"Invalid value for 'name': expected one of {', '.join(SAMPLES)}, but got {name!r}.")
    scenario_name, seed = SAMPLES[name]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    session = simulate_session(load_scenario(scenario_name), seed)
    xdf = folder / f"{name}.xdf"
    truth = folder / f"{name}.truth.json"
    write_session_xdf(session, xdf, time_origin=XDF_TIME_ORIGIN)
    os.chmod(xdf, 0o644)  # shipped example data (simulated people), not a personal recording
    doc = dict(session.truth, time_origin=XDF_TIME_ORIGIN, scenario=scenario_name, seed=seed)
    truth.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    size = xdf.stat().st_size
    if size > MAX_BYTES:
        raise RuntimeError(f"{xdf} is {size} bytes, more than the {MAX_BYTES} a shipped sample may have; "
                           "shorten the scenario or drop a high-rate stream.")
    return xdf, truth


def write_all(folder) -> list[Path]:
    """Write every sample session into ``folder``; returns the paths written."""
    out = []
    for name in SAMPLES:
        out += list(write_sample(name, folder))
    return out


def main(argv=None) -> int:
    """``python -m acquisition.samples FOLDER [--check]``."""
    parser = argparse.ArgumentParser(prog="python -m acquisition.samples", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="recordings", help="where to write (default recordings)")
    parser.add_argument("--check", action="store_true", help="only check that the files in FOLDER are up to date")
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            stale = [p.name for p in write_all(tmp)
                     if not (Path(args.folder) / p.name).is_file()
                     or not filecmp.cmp(p, Path(args.folder) / p.name, shallow=False)]
        if stale:
            print(f"out of date in {args.folder}: {', '.join(stale)}; run `make recordings`", file=sys.stderr)
            return 1
        print(f"{args.folder}: sample sessions are up to date")
        return 0
    for p in write_all(args.folder):
        print(f"wrote {p} ({p.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
