"""asp.search: known answers from perturbed starts, held, fixed and categorical parameters,
reproducibility, budgets; the nearest-sound lookup its starts use."""

import dataclasses

import numpy as np
import pytest
from conftest import synth_preset

from asp.errors import ASPError
from asp.search import Budget, Searcher, SearchObjective, SearchSpace, modulation_rates
from data.dataset import Split
from data.encoding import Codec
from data.lookup import nearest_rows
from data_generation.render import Renderer
from data_generation.spec import load_spec

VA = load_spec("va")
CODEC = Codec(VA)
NOTE = 57


def _preset(**values):
    return synth_preset("va", **values)


TRUE = _preset(filter_cutoff=0.55, amp_decay=0.4, amp_sustain=0.5, osc1_wave=0.5, filter_type=0.0)


@pytest.fixture(scope="module")
def target():
    return Renderer().render(VA, TRUE, note=NOTE)


@pytest.fixture(scope="module")
def searcher():
    with Searcher(workers=1) as s:
        yield s


def _all_but(*free):
    return [n for n in VA.names if n not in free]


def _search_free(searcher, target, label, start, renders, *free):
    """A search from one start (a preset) that moves only the ``free`` parameters."""
    return searcher.search(
        VA, target, NOTE, {label: CODEC.encode(start)}, Budget(renders=renders), hold=_all_but(*free), progress=False
    )


def test_objective_is_zero_for_the_target_and_hears_loudness(target):
    objective = SearchObjective(target)
    assert objective(target) == 0.0
    assert objective(0.5 * target) > 0.1  # 6 dB quieter is a worse match: the distance keeps level
    assert objective(0.5 * target) < objective(np.zeros_like(target))
    with pytest.raises(ASPError, match="samples"):
        objective(target[:100])


def test_objective_weighs_the_start_of_the_note_more():
    # a steady noise 6 dB quieter for half a second: at the start, about 4.5x the cost of the same
    # change near the end (half of each frame's weight decays with a 1 s time constant)
    noise = np.random.default_rng(0).normal(0, 0.1, 5 * 44100).astype(np.float32)
    objective, half = SearchObjective(noise), 44100 // 2
    early, late = noise.copy(), noise.copy()
    early[:half] *= 0.5
    late[8 * half : 9 * half] *= 0.5
    assert 3.5 < objective(early) / objective(late) < 5.5


@pytest.mark.slow
def test_finds_a_known_preset_from_a_perturbed_start(target, searcher):
    start = TRUE.copy()
    for name, shift in (("filter_cutoff", 0.2), ("amp_sustain", -0.15)):
        start[VA.names.index(name)] += shift
    free = ("filter_cutoff", "amp_sustain")
    found = _search_free(searcher, target, "perturbed", start, 240, *free)
    assert found.renders <= 240 and found.start == "perturbed" and found.runs[0]["start"] == "perturbed"
    assert found.distance < 0.05 * found.start_distance
    for name, tolerance in (("filter_cutoff", 0.02), ("amp_sustain", 0.05)):  # the cutoff is heard more
        i = VA.names.index(name)
        assert abs(found.preset[i] - TRUE[i]) < tolerance, name
    held = [VA.names.index(n) for n in _all_but(*free)]
    np.testing.assert_allclose(found.preset[held], start[held], atol=1e-7)  # held parameters never move (float32)


def test_categorical_parameters_move_as_classes(target, searcher):
    i = VA.names.index("osc1_wave")
    start = TRUE.copy()
    start[i] = 1.0  # another class of the 5 waveforms (the true one is class 2)
    found = _search_free(searcher, target, "wrong wave", start, 60, "osc1_wave")
    assert found.preset[i] == pytest.approx(0.5)  # class 2 of 5: k / (n - 1), never in between
    assert found.distance == 0.0


@pytest.mark.slow
def test_sweeps_during_a_run_find_a_class_that_pays_once_the_continuous_parameters_move(target, searcher):
    # filter closed (cutoff 0): the waveforms sound alike, so the sweep before the run cannot tell
    # them apart; once CMA-ES has opened the filter, a sweep during the run finds the true one
    # (with the filter type free too, the objective weighted towards the note's start ends in a local
    # minimum, filter type 1 with the cutoff at 0.47, where uniform weights found the true preset)
    start = _preset(filter_cutoff=0.0, amp_decay=0.4, amp_sustain=0.5, osc1_wave=1.0, filter_type=0.0)
    found = _search_free(searcher, target, "closed", start, 150, "filter_cutoff", "osc1_wave")
    assert found.runs[0]["stop"] == ["classes changed"] and found.runs[1]["start"] == "classes changed"
    assert found.preset[VA.names.index("osc1_wave")] == 0.5
    assert found.preset[VA.names.index("filter_cutoff")] == pytest.approx(0.55, abs=0.01)
    assert found.distance < 0.01 * found.start_distance


@pytest.mark.slow
def test_one_free_coordinate(target, searcher):  # cma's step-size cap fails in one dimension
    start = _preset(filter_cutoff=0.95, amp_decay=0.4, amp_sustain=0.5, osc1_wave=0.5, filter_type=0.0)
    found = _search_free(searcher, target, "open", start, 100, "filter_cutoff")
    assert abs(found.preset[VA.names.index("filter_cutoff")] - 0.55) < 0.01


def _modulated_tone(levels: np.ndarray, sr: int = 44100) -> np.ndarray:
    """A 5 s tone of 12 harmonics of 220 Hz whose amplitude follows ``levels`` (one per sample)."""
    t = np.arange(len(levels)) / sr
    tone = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 13))
    return (0.1 * levels * tone).astype(np.float32)


def test_modulation_rates_read_an_lfo_off_the_sound():
    sr, t = 44100, np.arange(5 * 44100) / 44100
    triangle = 1 - 4 * np.abs((3.0 * t) % 1 - 0.5)  # 3 Hz
    rates = modulation_rates(_modulated_tone(1 + 0.8 * triangle), sr, 0.3, 3.8)
    assert rates[0] == pytest.approx(3.0, rel=0.003)
    # sample-and-hold: random levels held 1 / 6.5 s each; the steps, not the levels, are periodic
    steps = np.random.default_rng(0).uniform(0.1, 1.0, 40)[(t * 6.5).astype(int)]
    assert any(r == pytest.approx(6.5, rel=0.01) for r in modulation_rates(_modulated_tone(steps), sr, 0.3, 3.8))
    slow = 1 + 0.8 * np.sin(2 * np.pi * 0.2 * t)  # one cycle in the note: no needle, not read
    assert all(r > 0.6 for r in modulation_rates(_modulated_tone(slow), sr, 0.3, 3.8))
    assert modulation_rates(np.zeros(2048, np.float32), sr, 0.0, 1.0) == []  # too short to read


LFO_TRUE = _preset(filter_cutoff=0.45, filter_resonance=0.5, amp_sustain=0.8, lfo_rate=0.67, lfo_cutoff=0.6)


@pytest.mark.slow
def test_a_fast_lfo_rate_is_read_from_the_target_not_searched_for(searcher):
    """A 3.3 Hz LFO (``lfo_rate`` 0.67) a full octave deep on the cutoff: 0.002 off in the rate is
    already far. From a start at 1 Hz, CMA-ES alone does not find it; the rate read off the target
    (va's spec declares ``rate_hz``) does, and the search ends on the true preset."""
    target = Renderer().render(VA, LFO_TRUE, note=NOTE)
    hz = 0.05 * 2 ** (9 * 0.67)
    assert any(r == pytest.approx(hz, rel=0.003) for r in modulation_rates(target, 44100, 0.3, 3.8))
    start = LFO_TRUE.copy()
    i = VA.names.index("lfo_rate")
    start[i] = 0.45
    free = ["lfo_rate", "filter_cutoff"]
    no_hint = dataclasses.replace(VA, params=tuple(dataclasses.replace(p, rate_hz=None) for p in VA.params))
    runs = {
        label: searcher.search(
            spec, target, NOTE, {"1 Hz": CODEC.encode(start)}, Budget(renders=60), hold=_all_but(*free), progress=False
        )
        for label, spec in (("read", VA), ("searched", no_hint))
    }
    read, searched = runs["read"], runs["searched"]
    assert read.runs[0]["start"].startswith("lfo_rate at 3.2")  # the first run starts at the rate heard
    assert abs(read.preset[i] - 0.67) < 0.002 and read.distance < 0.1 * read.start_distance
    assert abs(searched.preset[i] - 0.67) > 0.01 and searched.distance > 0.5 * searched.start_distance


def test_cma_moves_continuous_coordinates_and_sweeps_move_classes():
    space = SearchSpace(VA)
    continuous = [p for p in VA.learned if not p.categorical]
    assert len(space.free) == len(continuous) == 25 and CODEC.continuous_mask[space.free].all()
    assert [n for _, n in space.class_params] == [p.classes for p in VA.learned if p.categorical]
    candidates, changes = space.class_changes(TRUE)
    assert len(candidates) == sum(n - 1 for _, n in space.class_params) == 19  # one batch per sweep
    for candidate, (index, value) in zip(candidates, changes):
        assert np.flatnonzero(candidate != TRUE).tolist() == [index] and candidate[index] == value
    only_classes = SearchSpace(VA, hold=[p.name for p in continuous])
    assert len(only_classes.free) == 0 and len(only_classes.class_params) == 6


def test_fixed_parameters_stay_at_their_default(target, searcher):
    params = tuple(dataclasses.replace(p, fixed=p.name == "filter_cutoff") for p in VA.params)
    spec = dataclasses.replace(VA, params=params)
    start = Codec(spec).encode(TRUE)
    found = searcher.search(spec, target, NOTE, {"s": start}, Budget(renders=40), progress=False)
    i = VA.names.index("filter_cutoff")
    assert found.preset[i] == VA.defaults[i] and found.renders <= 40


@pytest.mark.slow
def test_never_worse_than_the_best_start_and_reproducible(target, searcher):
    rng = np.random.default_rng(3)
    starts = {f"random {k}": CODEC.encode(VA.snap(rng.uniform(0, 1, VA.n_params))) for k in range(3)}
    runs = [searcher.search(VA, target, NOTE, starts, Budget(renders=50), seed=7, progress=False) for _ in range(2)]
    first, second = runs
    assert first.distance <= first.start_distance
    assert first.start_distance == pytest.approx(min(first.starts.values()), abs=0.01)  # exact vs fast render
    assert first.start == min(first.starts, key=first.starts.get)
    np.testing.assert_array_equal(first.preset, second.preset)
    assert first.distance == second.distance and first.history == second.history
    other = searcher.search(VA, target, NOTE, starts, Budget(renders=50), seed=8, progress=False)
    assert not np.array_equal(other.preset, first.preset)


@pytest.mark.slow
def test_the_result_is_scored_on_exact_renders(target, searcher):
    """Candidates render with the fast (vectorized) build; what the search returns is re-rendered
    with the exact one, so its distances are those of the audio every output holds."""
    start = _preset(filter_cutoff=0.8, amp_sustain=0.3)
    found = _search_free(searcher, target, "s", start, 60, "filter_cutoff", "amp_sustain")
    objective, exact = SearchObjective(target), Renderer()
    assert found.distance == objective(exact.render(VA, found.preset, note=NOTE))
    assert found.start_distance == objective(exact.render(VA, found.start_preset, note=NOTE))
    assert found.distance < 0.5 * found.start_distance
    assert found.history[-1][1] == pytest.approx(found.distance, abs=0.005)  # the fast render's distance


@pytest.mark.slow
def test_two_workers_give_the_same_search_as_one(target, searcher):
    start = {"s": CODEC.encode(_preset(filter_cutoff=0.8))}
    one = searcher.search(VA, target, NOTE, start, Budget(renders=30), seed=1, progress=False)
    with Searcher(workers=2) as two:
        both = two.search(VA, target, NOTE, start, Budget(renders=30), seed=1, progress=False)
    np.testing.assert_array_equal(one.preset, both.preset)
    assert one.distance == both.distance


def test_a_seconds_budget_stops_the_search(target, searcher):
    start = {"s": CODEC.encode(_preset(filter_cutoff=0.9))}
    found = searcher.search(VA, target, NOTE, start, Budget(seconds=1.0), progress=False)
    assert found.seconds < 5 and found.renders > 1


@pytest.mark.parametrize(
    "budget, message",
    [
        ({"renders": 0}, "at least 1 render"),
        ({"renders": -5}, "at least 1 render"),
        ({"seconds": 0.0}, "positive number of seconds"),
        ({"seconds": -1.0}, "positive number of seconds"),
        ({"seconds": float("nan")}, "positive number of seconds"),
        ({}, "needs renders or seconds"),
    ],
)
def test_bad_budgets_are_refused(budget, message):
    with pytest.raises(ASPError, match=message):
        Budget(**budget)


def test_bad_search_inputs_are_refused(target, searcher):
    with pytest.raises(ASPError, match="at least one start"):
        searcher.search(VA, target, NOTE, {}, Budget(renders=10), progress=False)
    with pytest.raises(ASPError, match="cannot score its 2 starts"):
        two = {"a": CODEC.encode(TRUE), "b": CODEC.encode(TRUE)}
        searcher.search(VA, target, NOTE, two, Budget(renders=1), progress=False)
    with pytest.raises(ASPError, match="no parameter cutoff"):
        SearchSpace(VA, hold=["cutoff"])
    with pytest.raises(ASPError, match="nothing to search"):
        SearchSpace(VA, hold=VA.names)
    with pytest.raises(ASPError, match="finite mono audio"):
        SearchObjective(np.full(100, np.nan))


def test_nearest_rows_are_the_closest_mels_of_that_synth():
    mels = np.zeros((6, 2, 3), dtype=np.float32)
    for k in range(6):
        mels[k] += k
    synth = np.array(["va", "fm", "va", "va", "fm", "va"])
    names = np.array([str(k) for k in range(6)])
    split = Split("train", mels, {}, {}, None, None, synth, names, np.zeros(6), np.zeros(6))
    query = np.full((1, 2, 3), 2.4, dtype=np.float32)
    np.testing.assert_array_equal(nearest_rows(split, query, "va", k=3), [[2, 3, 0]])
    np.testing.assert_array_equal(nearest_rows(split, query, "fm", k=5), [[1, 4]])  # as many as there are
    with pytest.raises(ASPError, match="no modal samples"):
        nearest_rows(split, query, "modal")
