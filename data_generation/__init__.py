"""Synth layer: synth specs, preset sources and rendering through DawDreamer.

Importing this package imports nothing heavy (``asp``, which its modules import for errors and
files, loads DawDreamer first: see ``asp.backend``). The synth layer never imports the dataset
layer (``data``) nor the library above it: datasets are built on synths, not the other way round
(the contract in pyproject.toml, checked by ``lint-imports``).
"""

from asp.errors import ASPError

__all__ = ["ASPError"]
