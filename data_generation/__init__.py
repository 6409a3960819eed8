"""Synth layer: synth specs, preset sources and rendering through DawDreamer.

Importing this package imports nothing heavy: ``data_generation.render`` and ``spec_gen`` import
DawDreamer when they are used. Modules that use TensorFlow import ``backend`` first (DawDreamer
before TensorFlow: the other order segfaults). The synth layer never imports the dataset layer
(``data``): datasets are built on synths, not the other way round.
"""

from asp_io import ASPError

__all__ = ["ASPError"]
