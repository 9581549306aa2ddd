"""The command's own child processes: started so they die with it, and replaced when they
leave to shed memory.

Keras keeps a little memory of every model a process has built, so `digits search` and
`digits worker` train in a child (`recycled`) that leaves with `options.RECYCLE_EXIT` once
its memory grew by `--recycle` MiB; a fresh one takes over and resumes the study. The parent
stays free of TensorFlow. On Linux every child asks for a SIGTERM when its parent dies, so
`kill -9` of the command leaves nothing training that holds the study's lock.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from search.options import CONTINUES, RECYCLE_EXIT, SUPERVISED


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`python -m search ARGS`, which Linux stops (SIGTERM) if this process dies: a search
    killed with `kill -9` leaves nothing training that holds its study."""
    return subprocess.Popen(
        [sys.executable, "-m", "search", *args],
        env={**os.environ, **env},
        preexec_fn=_die_with_parent(),
    )


def _die_with_parent() -> Callable[[], None] | None:
    """What a child runs before it starts: ask Linux for a SIGTERM when its parent dies.
    Looked up here, not in the child, which may only make plain calls after the fork."""
    if sys.platform != "linux":
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    set_pdeathsig = 1  # PR_SET_PDEATHSIG
    return functools.partial(prctl, set_pdeathsig, int(signal.SIGTERM))


def without_flag(argv: list[str], flag: str, value: bool = True) -> list[str]:
    """`argv` without `flag VALUE` (or `flag=VALUE`); with `value=False`, without the
    switch `flag` alone."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = value
        elif not a.startswith(f"{flag}="):
            out.append(a)
    return out


def recycled(argv: list[str]) -> int:
    """Run `digits <argv>` (a search or a worker) in a child process, and again in a fresh
    one each time it leaves to shed the memory it gathered (RECYCLE_EXIT); returns the exit
    status of the last. The fresh ones resume the study where the last left it."""
    started, again = time.time(), without_flag(argv, "--overwrite", value=False)
    code = supervise(argv, {SUPERVISED: "1"})
    while code == RECYCLE_EXIT:
        code = supervise(again, {SUPERVISED: "1", CONTINUES: repr(started)})
    return code


def supervise(argv: list[str], env: dict[str, str]) -> int:
    """Run one child to its end; Ctrl-C reaches it by itself (same process group), a
    SIGTERM to this process is passed on."""
    proc = spawn(argv, env)

    def stop(signum: int, frame: Any) -> None:
        proc.terminate()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            try:
                code = proc.wait()
                return 128 - code if code < 0 else code  # killed by signal N: 128 + N
            except KeyboardInterrupt:  # the child says what to do; wait for it to leave
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)
