"""asp: automatic synthesizer programming, the library behind the commands.

The public API (``asp.api``, imported on first use; each a documented function the commands call):

    load_model(model)              a trained model ready to match sounds
    match(source, model=...)       presets for a sound file, a folder of sound files, or a test sample
    render(synth, preset)          a preset played by a synth: (n,) float32 audio
    generate(synths, n, out=...)   a dataset in the npy_data layout

Importing ``asp`` imports DawDreamer first (``asp.backend``): TensorFlow imported before
DawDreamer segfaults, so whatever imports any part of ``asp`` first is safe. The layers and what
each may import: docs/architecture.md (checked by ``lint-imports``).
"""

from asp import backend  # noqa: F401  (first: dawdreamer before tensorflow)

__version__ = "0.1.0"  # the package's version (pyproject.toml reads it)

API = ("load_model", "match", "render", "generate", "Matches")
__all__ = list(API)


def __getattr__(name: str):
    if name in API:
        from asp import api

        return getattr(api, name)
    raise AttributeError(f"module 'asp' has no attribute {name!r}")
