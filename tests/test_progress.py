"""What a search prints: the summary's edge warnings (the rest is seen in tests/test_tune.py)."""

from __future__ import annotations

from search import space
from search.progress import edge_warnings


def test_an_edge_is_named_only_where_the_trials_within_noise_agree():
    quick = space.load("quick")  # learning_rate: {0.001, 0.002, 0.004}
    best = {"learning_rate": 0.004, "dropout_conv": 0.1, "filters_1": 32}
    (alone,) = edge_warnings(quick, [best])
    assert "best learning_rate=0.004 sits at the upper edge" in alone and "widening" in alone
    (agreed,) = edge_warnings(quick, [best, {**best, "filters_1": 24}])
    assert "as do all 2 trials within seed noise of it" in agreed
    (parted,) = edge_warnings(quick, [best, {**best, "learning_rate": 0.002}])
    assert "within seed noise of it take 0.002, 0.004" in parted and "widening" not in parted
