"""The real-sound test set: Sonic Pi's pitched one-shots and General MIDI soundfont notes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from asp.errors import ASPError
from data.sound import SAMPLE_RATE
from data_generation import real_sounds as rs

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not rs.SOUNDFONT.is_file(),
    reason="fluidsynth or the TimGM6mb soundfont is not installed (sudo apt-get install fluidsynth timgm6mb-soundfont)",
)
needs_sonic_pi = pytest.mark.skipif(
    not (rs.SONIC_PI / "bass_hard_c.flac").is_file(),
    reason="Sonic Pi's samples are not installed (sudo apt-get install sonic-pi-samples)",
)


def test_midi_file_holds_the_note_at_the_synths_times():
    data = rs.midi_file(24, 64, velocity=90)
    assert data[:4] == b"MThd" and int.from_bytes(data[12:14], "big") == 480 and data[14:18] == b"MTrk"
    track = data[22:]
    assert track[:3] == bytes([0, 0xC0, 24])  # program change at 0
    # note on after 240 ticks (0.25 s: 960 ticks a second at 120 bpm), as a 2-byte delta
    assert track[3:8] == bytes([0x81, 0x70, 0x90, 64, 90])
    assert track[8:10] == bytes([0x96, 0x40])  # note off 2,880 ticks (3 s) later
    assert track[-3:] == bytes([0xFF, 0x2F, 0x00])


@needs_fluidsynth
def test_a_soundfont_note_plays_its_pitch_from_the_synths_onset():
    audio = rs._fit(rs.fluidsynth_note(0, 64))  # acoustic grand piano, E4
    assert audio.shape == (int(rs.SECONDS * SAMPLE_RATE),) and audio.dtype == np.float32
    pitch, voiced, spread = rs.measure_pitch(audio)
    assert abs(pitch - 64) < 0.5 and voiced > 0.5 and spread < 0.5
    onset = int(np.argmax(np.abs(audio) >= np.abs(audio).max() * 0.01))
    assert abs(onset / SAMPLE_RATE - rs.NOTE_ON) < 0.01


@needs_sonic_pi
def test_sonic_pi_keeps_pitched_one_shots_at_their_note(tmp_path):
    folder = tmp_path / "samples"
    folder.mkdir()
    for name in ("bass_hard_c", "ambi_swoosh", "drum_snare_hard"):  # a C1 bass, a noise sweep, a drum
        shutil.copy(rs.SONIC_PI / f"{name}.flac", folder)
    sounds = rs.sonic_pi_sounds(folder)
    assert [s.name for s in sounds] == ["bass_hard_c"]  # the drum is not a prefix we take, the sweep is unpitched
    assert sounds[0].note == 24 and sounds[0].source == "sonicpi"


def test_build_refuses_an_existing_folder_and_no_source(tmp_path):
    with pytest.raises(ASPError, match="exists"):
        rs.build(tmp_path)
    with pytest.raises(ASPError, match="no source of real sounds"):
        rs.build(tmp_path / "out", sonic_pi=tmp_path / "none", soundfont=tmp_path / "none.sf2")
    assert not (tmp_path / "out").exists()
