"""Per-sample quality codes carried next to every grid sample.

A grid sample is either valid (``OK`` or ``CORRECTED``) or missing: its value
is NaN and its code says why. Nothing is ever made up to fill a gap.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

__all__ = ["Quality", "VALID", "REASONS", "is_valid"]


class Quality(IntEnum):
    """Why a grid sample is (or is not) usable. Codes fit in ``uint8``."""

    OK = 0
    #: valid, but derived from a corrected beat (ectopic / missed / extra) or an interpolated short gap
    CORRECTED = 1
    #: no samples arrived (stream gap, strap dropout, lost stream)
    NO_DATA = 2
    #: EDA electrode off: near-zero, flat or out-of-range conductance
    ELECTRODE_OFF = 3
    #: motion artefact removed
    MOTION = 4
    #: physiologically impossible values from the device
    IMPLAUSIBLE = 5
    #: filter / detector still settling after start or after a gap
    WARMUP = 6


#: Codes whose samples carry a usable value.
VALID = (Quality.OK, Quality.CORRECTED)

#: Short, user-facing reasons, used in ``signal_loss`` records and the UI.
REASONS = {
    Quality.NO_DATA: "no_data",
    Quality.ELECTRODE_OFF: "electrode_off",
    Quality.MOTION: "motion",
    Quality.IMPLAUSIBLE: "implausible",
    Quality.WARMUP: "warmup",
}


def is_valid(codes: np.ndarray) -> np.ndarray:
    """Boolean mask of usable samples, same shape as ``codes``."""
    codes = np.asarray(codes)
    return (codes == Quality.OK) | (codes == Quality.CORRECTED)
