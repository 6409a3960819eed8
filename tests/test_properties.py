"""Property-based inputs for the parsers of the files users hand the toolkit: preset files (JSON
and amsynth banks), synth specs, dataset manifests and experiment configs.

The property: whatever the file holds, the parser returns something usable or raises
``ASPError`` (one line for the user), never another exception (a traceback). The inputs are
garbage, and real documents (the shipped specs and configs, presets the toolkit writes) with zero
to three corruptions: a value replaced by garbage, a key or item dropped. What a parser accepts
is checked to be usable: presets finite and normalized, specs that sample presets, manifests
that list synths, configs that resolve.
"""

import copy
import json
import math
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from asp.errors import ASPError
from asp.experiments import REAL_REQUIRED, REQUIRED, load_config, resolve
from data.dataset import MANIFEST, dataset_synths, read_manifest
from data_generation import amsynth
from data_generation.presets import random_presets, read_preset_file
from data_generation.spec import SYNTH_DIR, SynthSpec, load_spec, spec_from_json

FAST = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
CONFIGS = sorted(p for p in (SYNTH_DIR.parents[1] / "experiments/configs").glob("*.json") if p.name != "base.json")
VA = load_spec("va")
AMSYNTH = load_spec("amsynth")

leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
garbage = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
odd_numbers = st.sampled_from([math.nan, math.inf, -math.inf, 10**400, -1, 0, 1.5, 1e308])


def _paths(doc, path=()):
    """Every place in a JSON document, as a path of keys and indexes (the root is ())."""
    yield path
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield from _paths(value, (*path, key))


@st.composite
def corrupted(draw, documents):
    """A document from ``documents`` with 0-3 corruptions: a value replaced (by garbage or an
    odd number), or a key or item dropped."""
    doc = copy.deepcopy(draw(documents))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(list(_paths(doc))))
        if not path:
            doc = draw(garbage)
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(garbage | odd_numbers)
        elif isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    return doc


def outcome(parse):
    """``parse()``, or None when it raised ``ASPError``; any other exception fails the test."""
    try:
        result = parse()
    except ASPError as err:
        assert "\n" not in str(err).strip(), str(err)
        event("refused")
        return None
    event("accepted")
    return result


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


# ---------------------------------------------------------------------------------------
# preset files


@st.composite
def presets_of(draw, spec: SynthSpec, n: int = 1) -> np.ndarray:
    return random_presets(spec, n, np.random.default_rng(draw(st.integers(0, 2**32 - 1))))


def _faust_json(preset: np.ndarray) -> dict:
    return {"synth": "va", "presets": [{"name": "p", "values": VA.preset_to_dict(preset, native=True)}]}


def _preset_json(preset: np.ndarray) -> dict:
    return {"synth": "va", "name": "p", "normalized": VA.preset_to_dict(preset)}


def _params_json(preset: np.ndarray) -> dict:
    listing = [{"index": p.index, "name": p.label or p.name, "value": round(float(v), 6)} for p, v in
               zip(VA.params, preset)]  # fmt: skip
    return {"synth": "va", "plugin": None, "normalized_parameters": listing}


preset_documents = garbage | corrupted(
    st.one_of(presets_of(VA).map(lambda p, f=f: f(p[0])) for f in (_faust_json, _preset_json, _params_json))
)


def _usable(spec: SynthSpec, result) -> None:
    if result is None:
        return
    names, presets = result
    assert presets.shape == (len(names), spec.n_params) and len(names) >= 1
    assert np.isfinite(presets).all() and (presets >= 0).all() and (presets <= 1).all()


@FAST
@given(document=preset_documents, suffix=st.sampled_from([".json", ".faust.json", ".preset.json", ".params.json"]))
def test_any_json_preset_file_reads_or_is_an_asp_error(folder, document, suffix):
    path = folder / f"preset{suffix}"
    path.write_text(json.dumps(document))
    _usable(VA, outcome(lambda: read_preset_file(VA, path)))


@st.composite
def bank_texts(draw) -> str:
    """An amsynth bank as amsynth writes it, with 0-3 lines replaced, dropped or added."""
    presets = amsynth.presets_to_bank_values(AMSYNTH, draw(presets_of(AMSYNTH, draw(st.integers(1, 3)))))
    lines = amsynth.BANK_HEADER + "\n" + "".join(amsynth.preset_text(f"p{i}", v) for i, v in enumerate(presets))
    lines = lines.splitlines()
    bad_line = st.one_of(
        st.text(max_size=20),
        st.builds(lambda n: f"<preset> <name> {n}", st.text(max_size=8)),
        st.builds(
            lambda k, v: f"<parameter> {k} {v}",
            st.sampled_from(AMSYNTH.names) | st.text(max_size=5),
            st.floats().map(repr) | st.sampled_from(["1e400", "-3", "0x1", ""]) | st.text(max_size=5),
        ),
    )
    for _ in range(draw(st.integers(0, 3))):
        k = draw(st.integers(0, len(lines)))
        action = draw(st.sampled_from(["replace", "drop", "insert"]))
        if action == "insert" or k == len(lines):
            lines.insert(k, draw(bad_line))
        elif action == "drop":
            lines.pop(k)
        else:
            lines[k] = draw(bad_line)
    return "\n".join(lines) + "\n"


@FAST
@given(text=bank_texts(), suffix=st.sampled_from([".bank", ".json"]))
def test_any_amsynth_bank_reads_or_is_an_asp_error(folder, text, suffix):
    path = folder / f"presets{suffix}"
    path.write_text(text)
    _usable(AMSYNTH, outcome(lambda: read_preset_file(AMSYNTH, path)))


@FAST
@given(data=st.binary(max_size=64))
def test_any_bytes_as_a_preset_file_are_an_asp_error_or_presets(folder, data):
    path = folder / "bytes.json"
    path.write_bytes(data)
    _usable(VA, outcome(lambda: read_preset_file(VA, path)))


# ---------------------------------------------------------------------------------------
# synth specs

SPECS = [load_spec(name).to_json() for name in ("va", "fm", "amsynth", "calf_monosynth")]


def _smaller(spec: dict) -> dict:
    """A shipped spec cut to its first 6 parameters (corruptions then hit the other keys too)."""
    return {**spec, "parameters": spec["parameters"][:6]}


@FAST
@given(document=garbage | corrupted(st.sampled_from(SPECS).map(_smaller)))
def test_any_spec_builds_a_working_synth_or_is_an_asp_error(document):
    spec = outcome(lambda: spec_from_json(document))
    if spec is None:
        return
    assert spec.encoded_size >= 0 and len(spec.hash) == 16
    json.dumps(spec.to_json())
    presets = random_presets(spec, 3, np.random.default_rng(0))
    assert np.isfinite(spec.to_native(presets)).all() and ((presets >= 0) & (presets <= 1)).all()
    assert spec.render.num_samples >= spec.render.block_size


# ---------------------------------------------------------------------------------------
# dataset manifests

MANIFESTS = st.builds(
    lambda names, counts: {
        "generator_version": "2",
        "fingerprint": "0123456789abcdef01234567",
        "synths": [{"name": n, "hash": "abc", "encoded_size": 3, "n_params": 3, "backend": "faust"} for n in names],
        "counts": counts,
    },
    st.lists(st.sampled_from(["va", "fm", "modal", "../va", ""]), min_size=1, max_size=3),
    st.dictionaries(st.sampled_from(["train", "valid", "test"]), st.integers(0, 10)),
)


@FAST
@given(document=garbage | corrupted(MANIFESTS))
def test_any_manifest_lists_synths_or_is_an_asp_error(folder, document):
    (folder / MANIFEST).write_text(json.dumps(document))
    manifest = outcome(lambda: read_manifest(folder))
    if manifest is not None:
        synths = dataset_synths(folder)
        assert synths and all(isinstance(s, str) and s and "/" not in s for s in synths)
        assert len(set(synths)) == len(synths)


# ---------------------------------------------------------------------------------------
# experiment configs


def _shipped(path) -> dict:
    data = json.loads(path.read_text())
    return {**data, "include": "b.json"} if "include" in data else data


BASE = json.loads((CONFIGS[0].parent / "base.json").read_text())


@FAST
@given(
    first=garbage | corrupted(st.sampled_from(CONFIGS).map(_shipped)),
    second=corrupted(st.just(BASE) | st.sampled_from(CONFIGS).map(_shipped)),
)
@pytest.mark.slow
def test_any_config_resolves_or_is_an_asp_error(folder, first, second):
    (folder / "a.json").write_text(json.dumps(first))
    (folder / "b.json").write_text(json.dumps(second))  # what a.json includes (b.json may include itself)
    config = outcome(lambda: load_config(folder / "a.json"))
    if config is None:
        return
    real = "real_sounds" in config or any("real_sounds" in p for p in config.get("profiles", {}).values())
    if real:  # a real-sound config: no rows
        assert config.get("rows") is None
    else:
        assert config["rows"] and all(isinstance(row, dict) and "approach" in row for row in config["rows"])
    for profile in ["small", "paper", *config.get("profiles", {})]:
        resolved = outcome(lambda profile=profile: resolve(config, profile))
        if resolved is not None:
            # what no TrainConfig default stands in for (latent_size, seed, param_loss have defaults)
            assert set(REQUIRED) == {"data_dir", "epochs", "baselines"}
            assert set(REAL_REQUIRED if "real_sounds" in resolved else REQUIRED) <= set(resolved)


def test_the_shipped_configs_are_among_the_accepted(folder):
    shutil.copy(CONFIGS[0].parent / "base.json", folder / "base.json")
    for path in CONFIGS:
        (folder / "c.json").write_text(path.read_text())
        resolved = resolve(load_config(folder / "c.json"), "small")
        assert resolved["model"] if "real_sounds" in resolved else resolved["epochs"] >= 1
