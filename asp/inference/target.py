"""What to match: a mel, the audio it came from, the note to render at, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Target:
    """What to match: a mel, the audio it came from, the note to render at, and where it came from."""

    name: str
    mel: np.ndarray
    audio: np.ndarray
    note: int
    synth: str | None = None  # the true synth of a test sample
    true_vector: np.ndarray | None = None
    info: dict = field(default_factory=dict)
