"""The one place every entry point that uses TensorFlow goes through, before TensorFlow.

``import tensorflow`` before ``import dawdreamer`` segfaults (an LLVM symbol clash), so this
module imports DawDreamer first, and ``asp/__init__.py`` imports this module before anything else:
whatever imports any part of ``asp`` has DawDreamer loaded before it can load TensorFlow. The
light modules (``asp.errors``, ``asp.files``, ``asp.config``, ``asp.checkpoints``,
``data.encoding``, the synth specs) never import TensorFlow.

Devices: TensorFlow places work on a GPU when one is visible (install ``tensorflow[and-cuda]``
instead of ``tensorflow-cpu``: see requirements-gpu.txt); the CPU stays the default, and
``ASP_DEVICE=cpu`` hides the GPUs from a run that should not use them.

Keras' backend is TensorFlow unless ``KERAS_BACKEND`` says otherwise: ``KERAS_BACKEND=torch``
trains and predicts with PyTorch (a GPU machine with PyTorch but no TensorFlow); the weights files
are the same. ``tensorflow()`` gives the TensorFlow module only under its own backend.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("ASP_DEVICE", "").lower() == "cpu":
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"

import dawdreamer  # noqa: E402, F401  (must come before tensorflow)

# isort: split
import contextlib  # noqa: E402
import importlib.abc  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402

VERBOSE_ENV = "ASP_VERBOSE"  # set (to anything but 0) to see TensorFlow's start-up lines


@contextlib.contextmanager
def _stderr_to_devnull():
    """Sends file descriptor 2 to /dev/null while the block runs: TensorFlow's C++ start-up lines
    (oneDNN, absl::InitializeLog, CPU features) are written there before any log level applies."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Imports ``tensorflow`` (the first time anything asks for it) with its start-up lines
    silenced; Python warnings raised later still show."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; the real finders do the work
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            loader_exec = spec.loader.exec_module

            def exec_quietly(module):
                with _stderr_to_devnull():
                    loader_exec(module)

            spec.loader.exec_module = exec_quietly
        return spec


if os.environ.get(VERBOSE_ENV, "0") in ("", "0") and "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _QuietTensorFlow())


def tensorflow():
    """The ``tensorflow`` module when it is Keras' backend, else None (the TensorFlow-only parts
    of training: the tf.data stream, TensorBoard, op determinism, the device strategy)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf


def devices() -> str:
    """Where Keras runs, in words: 'CPU' or 'GPU x n (names)'."""
    tf = tensorflow()
    if tf is None:
        return _torch_devices() if keras_backend() == "torch" else f"CPU? (Keras backend {keras_backend()})"

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    names = []
    for gpu in gpus:
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except (RuntimeError, ValueError):
            names.append(gpu.name)
    return f"GPU x {len(gpus)} ({', '.join(names)})"


def keras_backend() -> str:
    import keras

    return keras.backend.backend()


def _torch_devices() -> str:
    import torch

    n = torch.cuda.device_count()
    return f"GPU x {n} ({torch.cuda.get_device_name(0)}, PyTorch)" if n else "CPU (PyTorch)"
