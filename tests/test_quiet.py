"""search.quiet: TensorFlow imported silently, with oneDNN's kernels on unless the user says."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

IMPORT = (
    "from search.quiet import quiet_tensorflow; quiet_tensorflow()\n"
    "import os; print(os.environ['TF_ENABLE_ONEDNN_OPTS'], os.environ['TF_CPP_MIN_LOG_LEVEL'])"
)


@pytest.mark.parametrize(("given", "kept"), [(None, "1"), ("0", "0")])
def test_onednn_on_unless_the_environment_says(given: str | None, kept: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    done = subprocess.run(
        [sys.executable, "-c", IMPORT], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [kept, "3"]
    assert done.stderr == ""  # TensorFlow's start-up lines are not the user's to read
