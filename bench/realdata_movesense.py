"""Is the real Movesense dyad ever measurably in tune? Its ECG through the live pipeline, as a dyad.

``../shared/realdata/tutorial_dyadic_movesense/data``: two Movesense chest straps (ECG at ~200 Hz, Unix timestamps),
one per person, in the same session: ~740 s with a 166-s pause, so about 9 minutes continuous. Heart only (no skin
conductance). Each ECG becomes a stream of Attune's convention (type ECG, mV, the person in the desc) and the pair goes
through :func:`attune_monitor.analysis.analyze_recording` with the balanced preset, as ``attune analyze`` would.

Prints the pair's mean windowed r, its chance level and surrogate spread, the arming excess with its standard error
and what arming needed at the end, the share of the time armed and the episodes. Splices where the pair is armed (issue
16's semi-synthetic positives) need an armed pair; this says whether this recording has one.

Usage::

    python bench/realdata_movesense.py [--data ../shared/realdata/tutorial_dyadic_movesense/data]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "tutorial_dyadic_movesense" / "data"
DEVICES = {"P1": "234130000540", "P2": "234130000594"}


def ecg_stream(folder: Path, person: str, device: str):
    """One person's ECG as a :class:`~attune_monitor.acquisition.files.RecordedStream` (mV, Unix seconds)."""
    import pandas as pd

    from attune_monitor.acquisition.convention import describe
    from attune_monitor.acquisition.files import RecordedStream

    path = next((folder / device).glob("ECG-*.csv"))
    table = pd.read_csv(path, skiprows=1)  # a fixed-width title line ("ECG ... 200"), then the CSV header
    ts = table["Timestamp"].to_numpy(float)
    ecg_mv = table["Sample"].to_numpy(float) * 1e-3  # microvolts in the file
    xml = (f"<info><name>{person} Movesense ECG</name><type>ECG</type><channel_count>1</channel_count>"
           f"<nominal_srate>200</nominal_srate><channel_format>float32</channel_format>"
           f"<source_id>{device}-ECG</source_id><desc><participant>{person}</participant>"
           "<manufacturer>Movesense</manufacturer><channels><channel><label>ECG</label><unit>mV</unit>"
           "<type>ECG</type></channel></channels></desc></info>")
    return RecordedStream(describe(xml), ts, ecg_mv[:, None], xml)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"No data at {args.data}: pass --data (the tutorial_dyadic_movesense/data folder).")
        return 2
    from attune_monitor.acquisition.files import Recording
    from attune_monitor.analysis import analyze_recording

    rec = Recording(Path("movesense-dyad"), [ecg_stream(args.data, p, d) for p, d in DEVICES.items()])
    an = analyze_recording(rec)
    hr = an.sync["hr"]
    sync, chance, sd = (np.asarray(hr[k])[0] for k in ("sync", "chance", "chance_sd"))
    print(f"windows {sync.size} ({np.isfinite(sync).sum()} valid), mean r {np.nanmean(sync):+.3f}, "
          f"chance {np.nanmean(chance):+.3f}, surrogate spread {np.nanmean(sd):.3f}")
    from attune_monitor.ui.analysis_io import analysis_to_json

    doc = analysis_to_json(an)
    for a in doc["attunement"]:
        hr_ex = a["above_chance"].get("hr", {})
        print(f"{'-'.join(a['pair'])}: {a['verdict']}; armed {a['armed_s']:.0f} s ({a['armed_fraction']:.0%}); "
              f"heart above chance over the session {hr_ex.get('excess')} +- {hr_ex.get('se')} (Fisher z)")
    print(f"state changes: {[(round(t), s) for t, _pair, s in an.state_changes]}")
    print(f"episodes: {len(doc['episodes'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
