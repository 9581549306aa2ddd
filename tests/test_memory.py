"""A long search must not grow trial after trial (keras-tuner #395). Generous bound, few trials;
the 40-trial measurement is in BENCHMARKS.md (benchmarks/memory.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import pytest
from memory import measure

pytestmark = pytest.mark.slow  # trains models or starts processes: seconds each

# Per trial after the first few: ~5 MiB before the eager optimizer/metric build, ~2 after.
MAX_GROWTH_PER_TRIAL_MIB = 3.6


def test_resident_memory_stays_flat_across_trials():
    curve = measure(trials=14, train_size=300)
    assert len(curve) == 14
    per_trial = (curve[-1] - curve[3]) / (len(curve) - 4)
    assert per_trial < MAX_GROWTH_PER_TRIAL_MIB, (
        f"RSS grew {per_trial:.1f} MiB per trial ({curve[3]:.0f} -> {curve[-1]:.0f} MiB)"
    )
