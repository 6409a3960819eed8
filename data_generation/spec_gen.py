"""Generating a spec from a synth's own parameter list (DawDreamer's parameter descriptions).

Works for any VST2/VST3/LV2 plugin and for Faust ``.dsp`` files. Plugins often report discrete
parameters as continuous (amsynth reports all 41 as continuous): when regenerating an existing
spec, what a person declared there (classes, group, sample range, units, fixed) is kept for every
parameter whose name is unchanged, so hand-made declarations survive regeneration.
"""

from __future__ import annotations

import re
from pathlib import Path

import dawdreamer as daw

from asp.errors import ASPError
from data_generation.render import _FAUST_RESERVED, quiet_native_output
from data_generation.spec import DEFAULT_RENDER, SynthSpec, spec_from_json

MAX_CLASSES = 128  # a discrete parameter with more steps is treated as continuous
_GROUP_WORDS = (
    ("lfo", ("lfo",)),
    ("fx", ("reverb", "delay", "chorus", "distortion", "crunch", "drive", "phaser", "flanger", "fx")),
    ("env", ("attack", "decay", "sustain", "release", "eg", "env", "fade")),
    ("fil", ("filter", "cutoff", "resonance", "reso", "separation", "kbd_track", "key_follow")),
    ("pitch", ("pitch", "transpose", "portamento", "bend", "tune", "octave", "range")),
    ("osc", ("osc", "wave", "pulse", "detune", "pw", "unison", "phase", "stretch", "window", "sync")),
    ("vol", ("vol", "volume", "gain", "level", "mix", "master", "amp")),
)
_FIXED_WORDS = ("midi_channel", "midi channel")


def snake(label: str) -> str:
    """A parameter label as a snake_case identifier: ``'O1<>2 Detune'`` -> ``'o1_2_detune'``."""
    out = re.sub(r"[^0-9a-zA-Z]+", "_", label).strip("_").lower()
    return out or "param"


def guess_group(name: str) -> str:
    """Best guess of a parameter's group from its name (edit the spec where it is wrong)."""
    words = set(re.split(r"[_\W]+", name.lower()))
    for group, keys in _GROUP_WORDS:
        if any(k in words or (len(k) >= 3 and k in name.lower()) for k in keys):
            return group
    return "mod"


def describe_plugin(source: str) -> list[dict]:
    """DawDreamer's description of every parameter of a VST2/VST3/LV2 plugin, in index order."""
    engine = daw.RenderEngine(44100, 512)
    try:
        with quiet_native_output():
            proc = engine.make_plugin_processor("describe", source)
    except Exception as err:
        raise ASPError(
            f"could not load plugin {source!r} ({err}); give the path of a .so/.vst3 "
            "or an LV2 URI (e.g. http://calf.sourceforge.net/plugins/Monosynth)"
        ) from None
    described = list(proc.get_parameters_description())
    for d in described:  # the value at instantiation is the plugin's real default (amsynth reports 0)
        d["value"] = float(proc.get_parameter(int(d["index"])))
    return described


def describe_faust(dsp_path: str | Path, num_voices: int = 0) -> list[dict]:
    """The parameters a Faust DSP exposes (less freq/gain/gate), in DawDreamer's index order."""
    engine = daw.RenderEngine(44100, 512)
    proc = engine.make_faust_processor("describe")
    proc.num_voices = num_voices
    try:
        proc.set_dsp_string(Path(dsp_path).read_text())
        proc.compile()
    except (OSError, RuntimeError) as err:
        raise ASPError(f"faust source {dsp_path} does not compile: {str(err).strip()[:200]}") from None
    return [d for d in proc.get_parameters_description() if d["label"] not in _FAUST_RESERVED]


def _fix_text(text: str) -> str:
    """Undoes UTF-8 read as Latin-1 in plugin strings (``'0Â°'`` -> ``'0°'``)."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _plugin_param(d: dict) -> dict:
    steps = int(d.get("numSteps") or 0)
    classes = steps if d.get("isDiscrete") and 2 <= steps <= MAX_CLASSES else 0
    default = float(d.get("value", d.get("defaultValue", 0.0)))
    out = {
        "label": d["name"],
        "index": int(d["index"]),
        "classes": classes,
        "default": default,
        "native_range": [0.0, 1.0],
    }
    choices = [_fix_text(str(s)) for s in d.get("valueStrings") or []]
    if classes and len(choices) == classes:
        out["choices"] = choices
    return out


def _faust_param(d: dict, index: int) -> dict:
    lo, hi = round(float(d["min"]), 6), round(float(d["max"]), 6)  # Faust reports float32 values
    steps = int(d.get("numSteps") or 0)
    discrete = d.get("isDiscrete") and float(d.get("step", 0)) == 1.0 and 2 <= steps <= MAX_CLASSES
    default = round((float(d["value"]) - lo) / (hi - lo), 6)
    return {
        "label": d["label"],
        "index": index,
        "classes": steps if discrete else 0,
        "default": default,
        "native_range": [lo, hi],
    }


def _param_entry(r: dict, pname: str, backend: str, prev) -> dict:
    """One parameter's spec entry from its described form ``r``, keeping ``prev``'s declarations."""
    entry = {
        "name": pname,
        "index": r["index"],
        "classes": r["classes"],
        "group": r.get("group") or guess_group(pname),
        "default": min(max(r["default"], 0.0), 1.0),
        "sample_range": r.get("sample_range", [0.0, 1.0]),
        "native_range": r["native_range"],
    }
    if "units" in r:
        entry["units"] = r["units"]
    if backend != "faust" and r["label"] != pname:
        entry["label"] = r["label"]
    if "choices" in r:
        entry["choices"] = r["choices"]
    if any(w in r["label"].lower() for w in _FIXED_WORDS):
        entry["fixed"] = True
    if prev is not None:
        entry["group"] = prev.group
        entry["sample_range"] = list(prev.sample_range)
        if prev.classes and not entry["classes"]:
            entry["classes"] = prev.classes
        for key in ("units", "rate_hz", "fixed", "choices"):
            value = getattr(prev, key)
            if value not in (None, False):
                entry[key] = list(value) if isinstance(value, tuple) else value
        if backend != "faust" and prev.name != pname:
            entry["name"] = prev.name
    if entry["classes"] >= 2:
        n = entry["classes"] - 1
        entry["default"] = round(entry["default"] * n) / n
    return entry


def build_spec(
    *,
    name: str,
    backend: str,
    source: str,
    described: list[dict],
    previous: SynthSpec | None = None,
    description: str = "",
) -> SynthSpec:
    """Builds a spec from a parameter list, keeping ``previous``'s declarations where names match.

    Args:
        name: synth name (the spec's file name).
        backend: faust, vst, vst3 or lv2.
        source: .dsp path (relative to the spec folder for built-ins), plugin path or LV2 URI.
        described: ``describe_plugin``, ``describe_faust`` or ``dx7.describe_dexed`` output.
        previous: an existing spec for this synth, whose hand-made fields are kept.
        description: one line for the spec.
    """
    if backend == "faust":
        raw = [_faust_param(d, i) for i, d in enumerate(described)]
    elif backend == "dexed":  # dx7.describe_dexed: already in the spec's terms, with groups and units
        raw = [dict(d) for d in described]
    else:
        raw = [_plugin_param(d) for d in described]
    # a parameter keeps its declarations when its label (and, for plugins, its index) is unchanged
    old = {
        ((p.label or p.name), None if backend == "faust" else p.index): p for p in (previous.params if previous else ())
    }
    params, seen = [], set()
    for r in raw:
        base = r["label"] if backend == "faust" else snake(r["label"])
        pname, k = base, 2
        while pname in seen:
            pname, k = f"{base}_{k}", k + 1
        seen.add(pname)
        prev = old.get((r["label"], None if backend == "faust" else r["index"]))
        params.append(_param_entry(r, pname, backend, prev))
    data = {
        "name": name,
        "description": description or (previous.description if previous else f"{name} ({backend})"),
        "backend": backend,
        "source": source,
        "render": dict(DEFAULT_RENDER)
        if previous is None
        else {k: getattr(previous.render, k) for k in DEFAULT_RENDER},
        "presets": list(previous.presets) if previous else [],
        "parameters": params,
    }
    if backend == "faust":
        data["num_voices"] = previous.num_voices if previous else 0
    return spec_from_json(data)
