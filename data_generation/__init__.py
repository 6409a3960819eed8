"""Synth layer: synth specs, preset sources and rendering through DawDreamer.

Importing this package imports ``dawdreamer`` first. ``import tensorflow`` before
``import dawdreamer`` segfaults (an LLVM symbol clash), so every entry point of the
project (scripts, models.py, tests) imports this package before anything that pulls
in TensorFlow.
"""

import dawdreamer  # noqa: F401  (must be imported before tensorflow)

from data_generation.errors import ASPError

__all__ = ["ASPError"]
