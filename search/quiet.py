"""TensorFlow, imported without its start-up chatter and with its fastest CPU kernels.

Importing TensorFlow and starting its runtime print a dozen lines through C++ logging that no
environment variable of this TensorFlow silences (absl's "All log messages before
absl::InitializeLog()", oneDNN and CPU-feature notices, a failed CUDA probe on a machine
without a GPU). Every command that trains calls `quiet_tensorflow` before it imports anything
that imports TensorFlow, so the first lines a user sees are the toolkit's.

TensorFlow's Linux wheels carry two sets of CPU kernels: oneDNN's, and Eigen's. They turn
oneDNN on only where the CPU has VNNI, bfloat16 or AMX instructions; an AVX2-only CPU (an
older AMD EPYC, say) gets Eigen's, which train the quick family at about 0.7x the speed of
oneDNN's held to AVX2 (BENCHMARKS.md, oneDNN or Eigen). `TF_ENV` turns oneDNN on
everywhere; a variable already set in the environment wins.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

TF_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "1"}


def quiet_tensorflow() -> None:
    """Import TensorFlow with its start-up lines sent to a temporary file.

    The lines are replayed if the import fails, so a broken install still explains itself.
    Python-side retracing warnings (one per model evaluated in a loop) are muted too; real
    errors still surface as exceptions.
    """
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "tensorflow" in sys.modules:
        return
    os.environ.update({**TF_ENV, **os.environ})  # read by TensorFlow on import
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
