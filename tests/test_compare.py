"""`digits compare`: held-out members of several studies, and their ensembles, on validation."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import copy_of, random_smoke

from search import api, data
from search.compare import Scored, by_configuration, forward_selection, top_ensembles
from search.ensemble import accuracy

LABELS = np.array([0, 1, 2, 3])


def member(name: str, right: list[bool], trial: str = "0") -> Scored:
    """Where `right`, 0.7 on the true label and 0.3 on the next; elsewhere 0.4 and 0.6, so
    one right member and one wrong average to right (0.55)."""
    probs = np.zeros((len(LABELS), 4))
    for i, (label, ok) in enumerate(zip(LABELS, right, strict=True)):
        probs[i, label], probs[i, (label + 1) % 4] = (0.7, 0.3) if ok else (0.4, 0.6)
    return Scored(name, "s", trial, 10, 60.0, probs, accuracy(probs, LABELS)[1])


def test_forward_selection_starts_from_the_best_member_and_adds_what_fixes_most():
    a = member("a", [True, True, True, False])  # 1 error
    b = member("b", [True, True, False, False])  # 2 errors, the same image wrong as a's
    c = member("c", [False, True, True, True])  # 1 error, elsewhere
    steps = forward_selection([b, c, a], LABELS)
    assert steps[0]["members"] in (["a"], ["c"]) and steps[0]["val_errors"] == 1
    # a and c err on different images and fix each other; b shares a's error.
    assert set(steps[1]["members"]) == {"a", "c"} and steps[1]["val_errors"] == 0
    assert [s["minutes"] for s in steps] == [1.0, 2.0, 3.0]
    every = np.mean([m.probs for m in (a, b, c)], axis=0)
    assert steps[-1]["val_errors"] == accuracy(every, LABELS)[1]


def test_seeds_of_one_configuration_are_grouped_with_their_spread():
    rows = by_configuration(
        [
            member("x0", [True, False, False, False], "7"),
            member("x1", [True, True, True, True], "7"),
            member("y0", [True, True, True, False], "3"),
        ]
    )
    assert [(r["trial"], r["val_errors"]) for r in rows] == [("3", [1]), ("7", [3, 0])]
    assert rows[0]["sd"] is None and rows[1]["sd"] == pytest.approx(np.std([3, 0], ddof=1))


def test_top_k_averages_one_seed_of_each_best_trial_over_every_seed_combination():
    a0, a1 = member("a0", [True, True, True, False], "4"), member("a1", [True] * 4, "4")
    b0 = member("b0", [False, True, True, True], "2")
    c0 = member("c0", [False, False, True, True], "9")  # ranked after a trial with no member
    longer = member("l0", [True] * 4, "4")
    longer = Scored("l0", "s", "4", 20, 120.0, longer.probs, 0)
    rows = top_ensembles([a0, b0, a1, c0, longer], {"s": ["4", "2", "7", "9"]}, LABELS)
    by_k = {(r["epochs"], r["top"]): r for r in rows}
    # Trial 9 ranks below trial 7, which has no member: no top-3 row.
    assert sorted(by_k) == [(10, 1), (10, 2), (20, 1)]
    assert by_k[10, 1]["val_errors"] == [1, 0] and by_k[10, 1]["minutes"] == 1.0
    pairs = [accuracy((x.probs + b0.probs) / 2, LABELS)[1] for x in (a0, a1)]
    assert by_k[10, 2]["val_errors"] == pairs == [0, 0] and by_k[10, 2]["trials"] == ["4", "2"]
    assert by_k[10, 2]["ensembles"] == 2 and by_k[10, 2]["minutes"] == 2.0
    assert by_k[20, 1]["mean"] == 0 and by_k[20, 1]["sd"] is None


@pytest.fixture(scope="module")
def studies(tmp_path_factory, mnist_subset):
    """Study a: 3 smoke trials, `api.fidelity` at 1 epoch (6 members). Study b: 2 trials,
    its best retrained with --hold-out. Study c: searched with another validation size."""
    from search.cli import main

    logs = tmp_path_factory.mktemp("compare") / "logs"
    common = ["--data", str(mnist_subset), "--logs", str(logs)]
    for name, trials, val in (("a", 3, 500), ("b", 2, 500), ("c", 1, 400)):
        argv = [*random_smoke(trials), "--study", name, "--val-size", str(val), *common]
        assert main(argv) == 0
    fidelity = api.fidelity("a", epochs=1, root=logs)
    assert len(fidelity["members"]) == 6
    retrain = ["retrain", "--study", "b", "--hold-out", "--top", "1", "--epochs", "1"]
    assert main([*retrain, "--logs", str(logs)]) == 0
    return logs


@pytest.mark.slow
def test_compare_pools_the_held_out_members_of_two_studies(studies, mnist_subset, run_cli):
    code, out, _ = run_cli("compare", "--study", "a", "--study", "b", "--logs", studies, "--json")
    assert code == 0
    result = json.loads(out)
    labels = [m["member"] for m in result["members"]]
    assert len(labels) == 7 and sum(x.startswith("a/fidelity/") for x in labels) == 6
    assert [x.rsplit("_", 2)[1:] for x in labels if x.startswith("b/retrain/")] == [["s0", "ho"]]
    # Every count is the member's real errors on the studies' shared validation split.
    split = data.split(data.load(mnist_subset), 500, seed=0)
    probs = {}
    for m in result["members"]:
        study, stage, name = m["member"].split("/")
        model = keras.saving.load_model(studies / study / stage / name / "member.keras")
        probs[m["member"]] = model.predict(split.x_val, verbose=0)
        assert m["val_errors"] == accuracy(probs[m["member"]], split.y_val)[1]
    pooled = np.mean(list(probs.values()), axis=0)
    assert result["pooled"]["val_errors"] == accuracy(pooled, split.y_val)[1]
    assert len(result["selection"]) == 7 and set(result["selection"][-1]["members"]) == set(labels)
    assert [len(c["val_errors"]) for c in result["configurations"]].count(2) == 3
    code, out, _ = run_cli("compare", "--study", "a", "--study", "b", "--logs", studies)
    assert code == 0 and "All members against a's alone" in out and "Forward selection" in out
    assert "top k trials" in out and {r["study"] for r in result["top"]} == {"a", "b"}
    assert api.compare(["a", "b"], root=studies) == result


@pytest.mark.slow
def test_compare_refuses_studies_that_hold_out_different_splits(studies, run_cli):
    code, _, err = run_cli("compare", "--study", "a", "--study", "c", "--logs", studies)
    assert code == 2 and "'a' and 'c' hold out different validation splits" in err
    code, _, err = run_cli("compare", "--study", "c", "--logs", studies)
    assert code == 2 and "study 'c' has no members trained without its validation split" in err
    code, _, err = run_cli("compare", "--study", "nope", "--logs", studies)
    assert code == 2 and "nope" in err


@pytest.mark.slow
def test_a_damaged_member_file_is_one_line_naming_it(studies, run_cli, tmp_path):
    logs = copy_of(studies, tmp_path)
    (member,) = (logs / "b" / "retrain").glob("*/member.keras")
    member.write_bytes(member.read_bytes()[:1000])  # cut short, as by a full disk
    code, out, err = run_cli("compare", "--study", "b", "--logs", logs)
    assert code == 2 and f"{member}: not a readable .keras file" in err
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1
