"""TensorFlow, imported without its start-up chatter.

Importing TensorFlow and starting its runtime print a dozen lines through C++ logging that no
environment variable of this TensorFlow silences (absl's "All log messages before
absl::InitializeLog()", oneDNN and CPU-feature notices, a failed CUDA probe on a machine
without a GPU). Every command that trains calls `quiet_tensorflow` before it imports anything
that imports TensorFlow, so the first lines a user sees are the toolkit's.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile


def quiet_tensorflow() -> None:
    """Import TensorFlow with its start-up lines sent to a temporary file.

    The lines are replayed if the import fails, so a broken install still explains itself.
    Python-side retracing warnings (one per model evaluated in a loop) are muted too; real
    errors still surface as exceptions.
    """
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_logical_devices()  # starts the runtime: the CUDA probe speaks here
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
