"""What a search prints: the summary's edge warnings (the rest is seen in tests/test_tune.py)."""

from __future__ import annotations

from pathlib import Path

from search import space
from search.progress import edge_warnings


def test_an_edge_is_named_only_where_the_trials_within_noise_agree():
    doc = {
        "model": {"filters_1": {"choice": [24, 32]}, "dropout_conv": {"choice": [0.1, 0.25]}},
        "train": {"learning_rate": {"choice": [2e-3, 4e-3, 8e-3]}},
    }
    rates = space.parse(doc, Path("rates.toml"))
    best = {"learning_rate": 0.008, "dropout_conv": 0.1, "filters_1": 32}
    (alone,) = edge_warnings(rates, [best])
    assert "best learning_rate=0.008 sits at the upper edge" in alone and "widening" in alone
    (agreed,) = edge_warnings(rates, [best, {**best, "filters_1": 24}])
    assert "as do all 2 trials within seed noise of it" in agreed
    (parted,) = edge_warnings(rates, [best, {**best, "learning_rate": 0.004}])
    assert "within seed noise of it take 0.004, 0.008" in parted and "widening" not in parted
