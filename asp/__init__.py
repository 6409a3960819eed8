"""asp: automatic synthesizer programming, the library behind the commands.

Importing ``asp`` imports DawDreamer first (``asp.backend``): TensorFlow imported before
DawDreamer segfaults, so every entry point that imports anything of ``asp`` first is safe.
"""

from asp import backend  # noqa: F401  (first: dawdreamer before tensorflow)
