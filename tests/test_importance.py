from __future__ import annotations

import numpy as np

from search.importance import analyse, rank


def synthetic_trials(n: int) -> list[dict]:
    """The score depends on the learning rate (peak at 1e-3) and the optimizer, not on noise."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(n):
        lr = 10 ** rng.uniform(-5, -1)
        optimizer = str(rng.choice(["adam", "sgd"]))
        noise = int(rng.integers(0, 100))
        score = 0.99 - 0.02 * (np.log10(lr) + 3) ** 2 - (0.01 if optimizer == "sgd" else 0)
        rows.append(
            {
                "val_accuracy": score + rng.normal(0, 1e-4),
                "learning_rate": lr,
                "optimizer": optimizer,
                "noise": noise,
                "batch_size": 128,
            }
        )
    return rows


def test_known_answer_is_recovered():
    ranking = rank(synthetic_trials(60), ["learning_rate", "optimizer", "noise"])
    assert [name for name, _ in ranking] == ["learning_rate", "optimizer", "noise"]
    assert ranking[0][1] > 0.6 and ranking[2][1] < 0.05
    assert abs(sum(share for _, share in ranking) - 1) < 1e-9


def test_analyse_plots_every_varying_parameter_and_flags_few_trials(tmp_path):
    rows = [*synthetic_trials(8), {"val_accuracy": None, "learning_rate": 1.0}]  # a failure
    summary = analyse(
        rows, ["learning_rate", "optimizer", "noise", "batch_size"], {"learning_rate"}, tmp_path
    )
    assert {p.name for p in tmp_path.glob("*.png")} == {
        "learning_rate.png",
        "optimizer.png",
        "noise.png",
    }  # batch_size never varies
    assert summary["trials"] == 8 and "uncertain" in summary["note"]
    assert (tmp_path / "importance.json").is_file()
