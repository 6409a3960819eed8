"""A test set of real sounds: recorded and sampled instrument notes that no synth of ours made.

    python data_generation/real_sounds.py --out real_sounds

Two sources, both Debian packages (``sudo apt-get install sonic-pi-samples fluidsynth
timgm6mb-soundfont``); a source whose package is missing is skipped with a line saying so:

- **Sonic Pi's samples** (``/usr/share/sonic-pi/samples``): its pitched one-shots (basses, bells,
  piano, guitar, drones, electronic blips). Each file's pitch is measured (pyin): a file is kept
  when at least ``MIN_VOICED`` of its sounding frames are voiced and its pitch stays within
  ``MAX_SPREAD`` semitones (interquartile range); its note is the median pitch. Drums, loops and
  noises fail the check.
- **A General MIDI soundfont** (TimGM6mb) played by FluidSynth: ``GM_PROGRAMS`` (piano, organ,
  guitar, bass, strings, brass, reeds, flute, synth leads and pads) at notes 40, 52, 64 and 76
  where the instrument plays them, each held like our synths' notes (on at 0.25 s, off at 3.25 s),
  without FluidSynth's reverb and chorus.

Every sound is written as ``<out>/<source>_<name>.wav`` (mono, 44.1 kHz, 5 s, its onset moved to
0.25 s where the synths start their notes), and ``<out>/sounds.csv`` lists name, source, MIDI note,
the measured pitch and how long the original lasted. ``run_inference.py --input <out>`` matches
them all.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
from tqdm import tqdm

from asp.cli import ArgumentParser, run_cli
from asp.errors import ASPError
from asp.files import atomic_folder
from data.sound import SAMPLE_RATE, align_onset, load_audio

SONIC_PI = Path("/usr/share/sonic-pi/samples")
SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
SECONDS = 5.0
NOTE_ON, NOTE_OFF = 0.25, 3.25  # seconds: as the synths' specs render (on at 0.25 s, held 3 s)
# Sonic Pi samples that may be pitched one-shots (the rest are drums, loops and noises)
SONIC_PI_PREFIXES = ("ambi_", "bass_", "elec_", "glitch_bass", "guit_", "perc_bell", "tabla_tun")
MIN_VOICED = 0.4  # of the frames within 30 dB of the loudest
MAX_SPREAD = 1.0  # semitones, interquartile range of the voiced pitch
# General MIDI program (0-based) -> the notes of 40/52/64/76 that the instrument plays
GM_PROGRAMS = {
    "piano": (0, (40, 52, 64, 76)),
    "epiano": (4, (40, 52, 64, 76)),
    "vibraphone": (11, (52, 64, 76)),
    "organ": (19, (40, 52, 64, 76)),
    "nylon_guitar": (24, (40, 52, 64, 76)),
    "finger_bass": (33, (40, 52)),
    "synth_bass": (38, (40, 52)),
    "violin": (40, (64, 76)),
    "strings": (48, (40, 52, 64, 76)),
    "trumpet": (56, (64, 76)),
    "alto_sax": (65, (52, 64)),
    "clarinet": (71, (52, 64, 76)),
    "flute": (73, (64, 76)),
    "square_lead": (80, (40, 52, 64, 76)),
    "saw_lead": (81, (40, 52, 64, 76)),
    "warm_pad": (89, (40, 52, 64, 76)),
}


@dataclass
class RealSound:
    name: str
    source: str
    note: int
    pitch: float  # measured, fractional MIDI
    seconds: float  # the original's length
    audio: np.ndarray  # (5 s,) float32 at 44.1 kHz, onset at 0.25 s


def measure_pitch(audio: np.ndarray) -> tuple[float, float, float]:
    """(median pitch in MIDI, voiced fraction of the sounding frames, interquartile pitch range in
    semitones) of a mono 44.1 kHz sound; the pitch is NaN when nothing is voiced."""
    y = librosa.resample(np.asarray(audio, dtype=np.float32), orig_sr=SAMPLE_RATE, target_sr=22050)
    f0, voiced, _ = librosa.pyin(
        y, fmin=librosa.note_to_hz("C1"), fmax=librosa.note_to_hz("C7"), sr=22050, frame_length=2048
    )
    rms = librosa.feature.rms(y=y, frame_length=2048, hop_length=512)[0][: len(f0)]
    sounding = rms >= rms.max() * 10 ** (-30 / 20)
    good = voiced & np.isfinite(f0) & sounding
    if not good.any():
        return float("nan"), 0.0, float("inf")
    midi = librosa.hz_to_midi(f0[good])
    q1, q3 = np.percentile(midi, [25, 75])
    return float(np.median(midi)), float(good.sum() / max(1, sounding.sum())), float(q3 - q1)


def _fit(audio: np.ndarray) -> np.ndarray:
    """A sound cut or padded to 5 s with its onset at 0.25 s, peak-normalized to 0.9."""
    n = int(SECONDS * SAMPLE_RATE)
    audio = np.pad(audio[:n], (0, max(0, n - len(audio))))
    audio = align_onset(audio, NOTE_ON)
    return (audio * (0.9 / max(float(np.abs(audio).max()), 1e-9))).astype(np.float32)


def sonic_pi_sounds(folder: Path = SONIC_PI) -> list[RealSound]:
    """The pitched one-shots of Sonic Pi's samples (see the module docstring)."""
    files = sorted(p for p in folder.glob("*.flac") if p.name.startswith(SONIC_PI_PREFIXES))
    out = []
    for path in tqdm(files, desc="sonic-pi", unit="file"):
        info = sf.info(path)
        try:
            audio = load_audio(path, SECONDS)
        except ASPError:  # too short or silent: not a note
            continue
        pitch, voiced, spread = measure_pitch(audio)
        if voiced < MIN_VOICED or spread > MAX_SPREAD:
            continue
        note = int(np.clip(np.round(pitch), 0, 127))
        out.append(RealSound(path.stem, "sonicpi", note, round(pitch, 2), round(info.duration, 3), _fit(audio)))
    return out


def midi_file(program: int, note: int, velocity: int = 100) -> bytes:
    """A one-track Standard MIDI File: ``program`` on channel 0, ``note`` on at 0.25 s and off at
    3.25 s (120 bpm, 480 ticks per beat: 960 ticks a second)."""

    def var(n: int) -> bytes:  # a variable-length quantity
        out = [n & 0x7F]
        n >>= 7
        while n:
            out.insert(0, (n & 0x7F) | 0x80)
            n >>= 7
        return bytes(out)

    on, off = int(NOTE_ON * 960), int(NOTE_OFF * 960)
    events = (
        var(0) + bytes([0xC0, program])
        + var(on) + bytes([0x90, note, velocity])
        + var(off - on) + bytes([0x80, note, 0])
        + var(int((SECONDS - NOTE_OFF) * 960)) + bytes([0xFF, 0x2F, 0x00])
    )  # fmt: skip
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(events)) + events


def fluidsynth_note(program: int, note: int, soundfont: Path = SOUNDFONT) -> np.ndarray:
    """One note of a General MIDI program rendered by FluidSynth: (n,) mono float32 at 44.1 kHz.

    Raises:
        ASPError: fluidsynth is not installed or fails.
    """
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise ASPError("fluidsynth is not installed; sudo apt-get install fluidsynth timgm6mb-soundfont")
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "note.mid", Path(tmp) / "note.wav"
        mid.write_bytes(midi_file(program, note))
        cmd = [exe, "-ni", "-q", "-R", "0", "-C", "0", "-g", "1.0", "-r", str(SAMPLE_RATE), "-F", str(wav)]
        done = subprocess.run([*cmd, str(soundfont), str(mid)], capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or not wav.is_file():
            raise ASPError(f"fluidsynth failed on program {program} note {note}: {done.stderr.strip()[:200]}")
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=SAMPLE_RATE)
    return mono


def soundfont_sounds(soundfont: Path = SOUNDFONT, programs: dict = GM_PROGRAMS) -> list[RealSound]:
    """The General MIDI notes of ``programs`` (see the module docstring), pitch-checked."""
    jobs = [(name, program, note) for name, (program, notes) in programs.items() for note in notes]
    out = []
    for name, program, note in tqdm(jobs, desc="soundfont", unit="note"):
        raw = fluidsynth_note(program, note, soundfont)
        audio = _fit(raw)
        pitch, _, _ = measure_pitch(audio)
        out.append(RealSound(f"{name}_{note}", "gm", note, round(pitch, 2), round(len(raw) / SAMPLE_RATE, 3), audio))
    return out


def build(out: str | Path, *, sonic_pi: Path = SONIC_PI, soundfont: Path = SOUNDFONT) -> list[RealSound]:
    """Writes the real-sound test set to ``out`` (a new folder, whole or not at all).

    Raises:
        ASPError: neither source is installed, or ``out`` exists.
    """
    out = Path(out)
    if out.exists():
        raise ASPError(f"{out} exists; choose a new --out folder")
    sounds: list[RealSound] = []
    if sonic_pi.is_dir():
        sounds += sonic_pi_sounds(sonic_pi)
    else:
        print(f"skipping Sonic Pi's samples: {sonic_pi} not found (sudo apt-get install sonic-pi-samples)")
    if soundfont.is_file() and shutil.which("fluidsynth"):
        sounds += soundfont_sounds(soundfont)
    else:
        print(
            f"skipping the soundfont: {soundfont} or fluidsynth not found "
            "(sudo apt-get install fluidsynth timgm6mb-soundfont)"
        )
    if not sounds:
        raise ASPError(
            "no source of real sounds is installed; sudo apt-get install sonic-pi-samples fluidsynth timgm6mb-soundfont"
        )
    with atomic_folder(out) as tmp:
        rows = []
        for s in sounds:
            sf.write(tmp / f"{s.source}_{s.name}.wav", s.audio, SAMPLE_RATE, subtype="FLOAT")
            rows.append(
                {
                    "file": f"{s.source}_{s.name}.wav",
                    "source": s.source,
                    "note": s.note,
                    "pitch": s.pitch,
                    "seconds": s.seconds,
                }
            )
        with open(tmp / "sounds.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return sounds


def main() -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="real_sounds", help="a new folder (default real_sounds)")
    args = p.parse_args()
    sounds = build(args.out)
    by_source = {src: sum(s.source == src for s in sounds) for src in ("sonicpi", "gm")}
    print(
        f"{len(sounds)} real sounds in {args.out} (Sonic Pi {by_source['sonicpi']}, soundfont {by_source['gm']}); "
        f"notes {min(s.note for s in sounds)}-{max(s.note for s in sounds)}"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
