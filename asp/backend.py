"""The one place every entry point that uses TensorFlow goes through, before TensorFlow.

``import tensorflow`` before ``import dawdreamer`` segfaults (an LLVM symbol clash), so this
module imports DawDreamer first, and ``asp/__init__.py`` imports this module before anything else:
whatever imports any part of ``asp`` has DawDreamer loaded before it can load TensorFlow. The
light modules (``asp.errors``, ``asp.files``, ``asp.config``, ``asp.checkpoints``,
``data.encoding``, the synth specs) never import TensorFlow.

Devices: TensorFlow places work on a GPU when one is visible (install ``tensorflow[and-cuda]``
instead of ``tensorflow-cpu``: see requirements-gpu.txt); the CPU stays the default, and
``ASP_DEVICE=cpu`` hides the GPUs from a run that should not use them.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("ASP_DEVICE", "").lower() == "cpu":
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"

import dawdreamer  # noqa: E402, F401  (must come before tensorflow)


def devices() -> str:
    """Where TensorFlow runs, in words: 'CPU' or 'GPU x n (names)'."""
    import tensorflow as tf

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
