"""The public API at the package's top (asp.load_model, match, render, generate), and the commands
that call it."""

import ast
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import asp
from asp.search import Budget

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_generated_sound_is_matched_through_the_api_in_a_few_lines(tiny_data, tiny_models, tmp_path):
    audio = asp.render("fm", note=60)  # the fm spec's default preset
    sf.write(tmp_path / "fm.wav", audio, 44100)
    found = asp.match(
        tmp_path / "fm.wav", model="multi", model_dir=tiny_models, data_dir=tiny_data, out=tmp_path / "m", note=60,
        refine=Budget(renders=40), refine_synths=["fm"], workers=1, plot=False,
    )  # fmt: skip
    (matched,) = found.matched
    assert not found.failed and found.index is None and matched["out"] == tmp_path / "m"
    results = matched["results"]
    assert {r["synth"] for r in results} == {"va", "fm", "modal"} and (tmp_path / "m" / "report.html").is_file()
    fm = next(r for r in results if r["synth"] == "fm")
    assert fm["search_renders"] <= 40 and fm["search_distance"] <= fm["search_distance_start"] + 1e-9
    # the preset file written plays back what was written, through the same API
    again = asp.render("fm", tmp_path / "m" / "fm.refined.faust.json", note=60)
    written, _ = sf.read(tmp_path / "m" / "fm.refined.wav", dtype="float32")
    assert np.array_equal(again, written)


def test_a_loaded_model_matches_a_test_sample_like_one_loaded_by_name(tiny_data, tiny_models, tmp_path):
    model = asp.load_model("multi", model_dir=tiny_models, data_dir=tiny_data)
    kw = dict(data_dir=tiny_data, workers=1, plot=False)
    by_model = asp.match(0, model=model, out=tmp_path / "a", **kw).matched[0]
    by_name = asp.match(0, model="multi", model_dir=tiny_models, out=tmp_path / "b", **kw).matched[0]
    model.close()
    assert (
        by_model["results"] == by_name["results"]
        and by_model["target"].name == "test_00000_" + by_model["target"].synth
    )


def test_generate_builds_a_dataset(tmp_path):
    summary = asp.generate(["fm"], 2, out=tmp_path / "d", presets=["random"], workers=1, progress=False)
    assert summary.complete and sum(summary.counts.values()) == summary.kept["fm"] > 0


def calls(path: str) -> set[str]:
    """The asp.<name>(...) calls in a file."""
    tree = ast.parse((ROOT / path).read_text())
    return {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "asp"
    }


def test_the_commands_call_the_api():
    assert "match" in calls("run_inference.py")
    assert "generate" in calls("data_generation/generate.py")
    assert "render" in calls("data_generation/render_presets.py")
