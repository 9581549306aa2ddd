from __future__ import annotations

import json
import time

from search.study import Study


def test_run_clock_records_each_part_while_it_runs(tmp_path):
    study = Study("s", tmp_path)
    study.dir.mkdir()
    path = study.dir / "run_time.json"
    with study.run_clock(every=0.05) as parts:
        time.sleep(0.3)
        # Written while running, so an interrupted part keeps (nearly) all its time.
        assert json.loads(path.read_text())["parts"][0] >= 0.1
    first = json.loads(path.read_text())["parts"]
    assert len(first) == 1 and first[0] >= 0.3
    with study.run_clock(every=0.05) as parts:
        assert parts()[0] == first[0] and len(parts()) == 2
    assert len(json.loads(path.read_text())["parts"]) == 2


def test_run_clock_writes_nothing_before_the_study_folder_exists(tmp_path):
    study = Study("s", tmp_path)
    with study.run_clock(every=0.01) as parts:
        time.sleep(0.05)
        assert len(parts()) == 1
    assert not study.dir.exists()
