"""A long search must not grow trial after trial (keras-tuner #395). Generous bound, few trials;
the 200-trial measurement is in BENCHMARKS.md (benchmarks/memory.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import pytest
from memory import measure

pytestmark = pytest.mark.slow  # trains models or starts processes: seconds each

# Per trial after the first few: ~5 MiB before the eager optimizer/metric build, ~2-3 after.
MAX_GROWTH_PER_TRIAL_MIB = 3.6


def test_one_process_grows_little_per_trial():
    curve = measure(trials=14, recycle=0, train_size=300).curve
    assert len(curve) == 14
    per_trial = (curve[-1] - curve[3]) / (len(curve) - 4)
    assert per_trial < MAX_GROWTH_PER_TRIAL_MIB, (
        f"RSS grew {per_trial:.1f} MiB per trial ({curve[3]:.0f} -> {curve[-1]:.0f} MiB)"
    )


def test_fresh_processes_keep_a_search_flat():
    run = measure(trials=14, recycle=8, train_size=300)
    curve = run.curve
    assert len(curve) == 14 and run.restarts() >= 1
    assert curve[-1] <= curve[4] * 1.05, f"trial 5: {curve[4]:.0f} MiB, 14: {curve[-1]:.0f}"
