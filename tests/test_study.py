from __future__ import annotations

import json
import time

import numpy as np
import pytest

from search.study import Study, atomic_path, write_atomic


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


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "probs.npz"
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, x=np.arange(3))  # numpy keeps the name: it ends in .npz
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        np.savez_compressed(tmp, x=np.arange(5))
        raise RuntimeError("killed halfway")
    with np.load(path) as f:
        assert f["x"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["probs.npz"]  # no temporary left behind


def test_write_atomic_replaces_text_readable_by_others(tmp_path):
    path = tmp_path / "sub" / "study.json"
    write_atomic(path, "old")
    write_atomic(path, "new")
    assert path.read_text() == "new"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["study.json"]
