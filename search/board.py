"""`digits board`: TensorBoard on the studies, bound to 127.0.0.1, stopped with the command."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rich.console import Console

from search.study import StudyError

PORT = 6006
START_TIMEOUT = 60.0  # seconds TensorBoard gets to answer its first request


def serve(logdir: Path, port: int, console: Console) -> int:
    """Run TensorBoard on `logdir` until Ctrl-C or SIGTERM; returns its exit status."""
    if not logdir.exists():
        raise StudyError(f"{logdir}: nothing to show yet; run `digits search` first")
    # Checked first: whatever already answers on the port would pass for TensorBoard below.
    if in_use(port):
        raise StudyError(f"port {port} on 127.0.0.1 is in use (another board?); pass --port")
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
    proc = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)], stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/"
    # `kill` (SIGTERM) stops the board like Ctrl-C: through the `finally` below, which stops
    # TensorBoard too; by default Python would die at once and leave TensorBoard running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if not wait_http(url, proc, START_TIMEOUT):
            raise StudyError(f"TensorBoard did not start on port {port} (in use?)")
        console.print(f"TensorBoard on {logdir}/ at {url}  (HParams: {url}#hparams) · Ctrl-C stops")
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def in_use(port: int) -> bool:
    """True if something listens on `port` of 127.0.0.1."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> bool:
    """True once `url` answers; False if `proc` dies or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.3)
    return False
