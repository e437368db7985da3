"""Import TensorFlow once, without its C++ start-up chatter on the user's terminal.

TensorFlow's native logging (absl) prints oneDNN notices and CUDA probing errors straight to file
descriptor 2 before ``TF_CPP_MIN_LOG_LEVEL`` takes effect, so a plain ``glaviz deploy`` would start
with lines that look like failures. Unless ``--debug`` is given, the import and the first device
query run with descriptor 2 pointed at /dev/null.

Start-up time counts too: every command that predicts pays it. The import hides the optional
packages Keras loads only for features glaviz does not use, and :func:`prefer_sequential_ops`
sizes TensorFlow's pools for a CPU before its runtime starts.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from glaviz.util.leftovers import use_private_tempdir
from glaviz.util.stderr import silenced

#: Optional packages Keras imports at start-up only for features glaviz never uses (its
#: scikit-learn wrappers, its image-gallery plot), each inside ``try: … except ImportError``.
OPTIONAL_AT_KERAS_IMPORT: tuple[str, ...] = ("sklearn", "matplotlib")


@contextlib.contextmanager
def _without_keras_extras() -> Iterator[None]:
    """Hide :data:`OPTIONAL_AT_KERAS_IMPORT` while TensorFlow imports Keras.

    Keras handles their absence; hiding them takes 1.1–1.2 s (about a third) off starting
    TensorFlow, in every command that does. Both import normally afterwards: ``calibrate`` uses
    scikit-learn, ``calibrate --plot`` matplotlib.
    """
    hidden = [name for name in OPTIONAL_AT_KERAS_IMPORT if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes "import name" fail
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


#: Whether :func:`import_tensorflow` hides TensorFlow's start-up lines by default; the CLI turns
#: it off for ``--debug`` before an engine starts TensorFlow.
QUIET = True


def import_tensorflow(*, quiet: bool | None = None) -> Any:
    """Import TensorFlow (and probe devices), quietly unless told (default: :data:`QUIET`);
    return the module."""
    quiet = QUIET if quiet is None else quiet
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    # 3 also hides native ERROR lines that TensorFlow prints for recoverable conditions (e.g. a
    # oneDNN kernel fallback); real failures still surface as Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if quiet else "0")
    # Autograph's generated sources go to a temp folder of this process, removed at exit.
    use_private_tempdir()
    with silenced() if quiet else contextlib.nullcontext(), _without_keras_extras():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
    return tf


def prefer_sequential_ops() -> None:
    """On a machine without a GPU, run TensorFlow's ops one at a time, each on every core.

    By default TensorFlow runs independent ops side by side (GlaViTU's per-group fusion
    branches, its U-Net projections), each on part of the cores; on a CPU the convolutions
    then compete for the same cores and caches. One op at a time is 4 % faster per published
    window on 2 cores. A user's ``TF_NUM_INTEROP_THREADS`` wins, GPUs are left alone, and
    nothing changes once the runtime has started (TensorFlow fixes its pools at start-up).
    """
    if "TF_NUM_INTEROP_THREADS" in os.environ:
        return
    tf = import_tensorflow()
    if tf.config.list_physical_devices("GPU"):
        return
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_inter_op_parallelism_threads(1)
