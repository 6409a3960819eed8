"""What every page shares: the Jinja2 environment of ``templates/``, atomic page writing, and the
figures, note names, mel PNGs and audio files pages show."""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import quote

import jinja2
import numpy as np

from asp.files import atomic_write, write_sound

TEMPLATES = Path(__file__).resolve().parent / "templates"
MATCH_PAGE = "report.html"
INDEX_PAGE = "index.html"
REPORT_FOLDER = "report"  # <evaluation out>/report/index.html and its audio
PRESETS = "presets.npz"
REPORT_SAMPLES = 12  # samples an evaluation report renders again by default
PRESET_FILES = (".bank", ".faust.json", ".params.json", ".syx", ".preset.json")  # links per match, in this order
# ... then the match's LV2 preset bundle, <target>.<stem>.lv2/ (data_generation/lv2/)
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
GENERATOR = "multi-task-asp report.py"  # every page's <meta name="generator">: our mark (kept as it was: older pages)
_ENV = None


def hpss_bins(rows: list[dict]) -> list[int]:
    """The HPSS bins that label evaluation rows, in order; empty when the test set has no labels
    (generated with ``--no-hpss``: every label is 0)."""
    return sorted({int(r["hpss"]) for r in rows} - {0})


def environment():
    """The Jinja2 environment of ``templates/``: autoescaped, undefined names are errors."""
    global _ENV
    if _ENV is None:
        _ENV = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        _ENV.filters["url"] = lambda path: quote(str(path))
        _ENV.filters["num"] = number
        _ENV.globals["note_name"] = note_name
        _ENV.globals["generator"] = GENERATOR
    return _ENV


def render_page(template: str, path: Path, **context) -> Path:
    """Renders ``templates/<template>`` into ``path`` (atomically)."""
    html = environment().get_template(template).render(**context)
    with atomic_write(path) as f:
        f.write(html)
    return path


def number(value, digits: int = 2) -> str:
    """A distance for a page: ``digits`` decimals, ``-`` for a missing or non-finite value."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return "-"


def note_name(note: int) -> str:
    """MIDI note -> name with octave: 57 -> A3, 60 -> C4."""
    return f"{NOTE_NAMES[int(note) % 12]}{int(note) // 12 - 1}"


def save_mel_png(path: Path, mel: np.ndarray, *, step: int = 1) -> None:
    """A mel spectrogram as a PNG, low frequencies at the bottom, each pixel one bin and frame
    (written directly: into a folder that is swapped in whole once complete).

    Args:
        mel: (128, frames) float32 in [0, 1].
        step: keep every ``step``-th frame (2 halves the width, for thumbnails).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import image

    image.imsave(path, np.asarray(mel)[:, ::step], cmap="magma", vmin=0.0, vmax=1.0, origin="lower", format="png")


def write_audio(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit audio in the format of the path's suffix (``.flac``: lossless, about a third of a
    16-bit wav's size, and every current browser plays it), scaled down only if it would clip
    (written directly, like ``save_mel_png``)."""
    audio = np.asarray(audio, dtype=np.float32)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 1.0:
        audio = audio / peak
    write_sound(path, audio, sample_rate, subtype="PCM_16")


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())
