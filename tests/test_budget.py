from __future__ import annotations

import pytest

from search.budget import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45m", 2700),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1h30", 5400),
        ("90s", 90),
        ("90", 90),
        ("1.5h", 5400),
        ("2h05", 7500),
        (" 20M ", 1200),
    ],
)
def test_durations_read_as_people_write_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "0", "0m", "1x", "30m1h", "-5m"])
def test_what_is_not_a_positive_duration_is_refused(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [42, 187, 5400, 7500])
def test_what_is_printed_reads_back(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


def test_the_plan_states_the_budget(run_cli, tmp_path):
    code, out, _ = run_cli(
        "search", "--space", "smoke", "--time-budget", "1h30", "--plan", "--logs", tmp_path
    )
    assert code == 0 and "Time budget 1h30m:" in out
