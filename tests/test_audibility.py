"""asp.evaluation.audibility: which parameters a sound reveals, and the parameter-MSE floor."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import synth_preset, toy_spec

from asp.evaluation.audibility import THRESHOLD, audibility, inaudible_floor, sweep, sweep_values
from data.encoding import Codec
from data_generation.render import Renderer
from data_generation.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent


def test_sweep_values_cover_the_sampling_range():
    va = load_spec("va")
    cutoff, wave = va.params[va.names.index("filter_cutoff")], va.params[va.names.index("osc1_wave")]
    assert sweep_values(cutoff) == pytest.approx([0.35, 0.65, 0.95])
    assert sweep_values(wave) == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


@pytest.mark.slow
def test_an_lfo_at_depth_zero_is_inaudible_and_the_cutoff_is_not():
    # va's defaults route the LFO nowhere (all three depths 0): its rate and wave cannot change the
    # sound; nor, all but, can the filter's key tracking at note 60 (261.63 Hz is its reference)
    va = load_spec("va")
    loudest = dict(zip([p.name for p in va.learned], sweep(va, synth_preset("va"), 60, Renderer())))
    assert loudest["lfo_rate"] == loudest["lfo_wave"] == 0.0 and loudest["filter_keytrack"] < 1e-3
    assert loudest["filter_cutoff"] > 10 and loudest["osc_sub"] > 1
    # routed to the cutoff, the same LFO is heard
    routed = dict(zip([p.name for p in va.learned], sweep(va, synth_preset("va", lfo_cutoff=0.6), 60, Renderer())))
    assert routed["lfo_rate"] > 1 and routed["lfo_wave"] > 1


def test_the_floor_counts_only_inaudible_parameters():
    codec = Codec(toy_spec((0, "osc", 0.5), (3, "osc", 0.0)))  # encoded: [p0, p1 class 0, class 1, class 2]
    true = np.array([[1.0, 0, 1, 0], [0.0, 1, 0, 0]])
    prior = np.array([0.5, 0.5, 0.5, 0.0])
    loudest = np.array([[0.1, 5.0], [5.0, 0.1]])  # sound 0: p0 inaudible; sound 1: p1 inaudible
    # sound 0 leaves (1 - 0.5)^2 = 0.25 at p0; sound 1 leaves 0.25 + 0.25 + 0 at p1's block; 8 positions in all
    assert inaudible_floor(codec, true, loudest, prior, 0.3) == pytest.approx(0.75 / 8)
    assert inaudible_floor(codec, true, loudest, prior, 0.05) == 0.0


@pytest.mark.slow
def test_audibility_writes_its_tables(tiny_data, tmp_path):
    results = audibility(
        tiny_data, tmp_path / "aud", split="train", train_dir=tiny_data, max_samples=3, workers=1, progress=False
    )
    with open(tmp_path / "aud" / "sweeps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sum(r["sounds"] for r in results.values()) == 3
    assert len(rows) == sum(r["sounds"] * len(load_spec(s).learned) for s, r in results.items())
    for synth, r in results.items():
        mine = np.array([float(row["max_lsd"]) for row in rows if row["synth"] == synth])
        assert r["inaudible"] == pytest.approx(np.mean(mine < THRESHOLD))
        assert 0 <= r["floor"] and r["mean_mse"] > 0
    summary = (tmp_path / "aud" / "summary.md").read_text()
    assert "inaudible floor of the parameter MSE" in summary and "how often each parameter is audible" in summary


def test_a_bad_threshold_is_a_one_line_error(tiny_data, tmp_path):
    out = tmp_path / "aud"
    res = subprocess.run(
        [sys.executable, "experiments/audibility.py", str(tiny_data), "--out", str(out), "--threshold", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--threshold" in res.stderr.strip().splitlines()[-1]
    assert not out.exists()
