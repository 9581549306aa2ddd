"""A long search must not grow trial after trial (keras-tuner #395). Generous bound, few trials;
the 40-trial measurement is in BENCHMARKS.md (benchmarks/memory.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from memory import measure


def test_resident_memory_stays_flat_across_trials():
    curve = measure(trials=14, train_size=300)
    assert len(curve) == 14
    assert curve[-1] <= curve[3] * 1.15, f"RSS grew from {curve[3]:.0f} to {curve[-1]:.0f} MiB"
