"""Presets <-> LV2 port values: a synth's ports (a built-in synth's from its spec, a plugin's from
its installed Turtle), and a preset written as an LV2 preset bundle or read back from one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asp.errors import ASPError
from asp.files import atomic_folder
from data_generation.lv2.bundles import (
    ASP_NS,
    LV2,
    PSET,
    RDF,
    RDFS,
    Port,
    _installed,
    _slug,
    plugin_uri,
    preset_bundle_name,
    read_preset_bundle,
    search_path,
)
from data_generation.spec import SynthSpec

# ---------------------------------------------------------------------------------------
# presets: normalized values <-> port values


def _spec_ports(spec: SynthSpec) -> tuple[Port, ...]:
    """The ports of a built-in synth's plugin, as ``build_plugin`` makes them: from the spec."""
    ports = []
    for p in spec.params:
        low, high = p.native_range
        points = tuple((c, low + k * (high - low) / (p.classes - 1)) for k, c in enumerate(p.choices or ()))
        ports.append(
            Port(
                index=p.index,
                symbol=p.name,
                name=p.label or p.name,
                minimum=low,  # a reversed native_range makes build_plugin refuse the DSP's slider
                maximum=high,
                default=low + p.default * (high - low),
                integer=p.categorical,
                enumeration=bool(points),
                scale_points=points,
            )
        )
    return tuple(ports)


def plugin_ports(spec: SynthSpec) -> tuple[str, tuple[Port, ...]]:
    """The URI and the input control ports (one per spec parameter, in the spec's order) of the
    LV2 plugin a synth's presets apply to.

    A Faust synth's come from its spec (the plugin ``build_plugin`` makes); an LV2 synth's (Calf)
    from the installed plugin's Turtle: its ``p.index``-th input control port is parameter ``p``
    (DawDreamer numbers them so), and its name must be the parameter's label.

    Raises:
        ASPError: for a synth without an LV2 plugin (VST), an LV2 plugin that is not installed,
            or one whose ports do not match the spec (a parameter the plugin does not have).
    """
    if spec.backend == "faust":
        return plugin_uri(spec), _spec_ports(spec)
    if spec.backend != "lv2":
        raise ASPError(f"synth {spec.name!r} is a {spec.backend.upper()} plugin: it has no LV2 presets")
    uri = spec.resolve_source()
    plugin = _installed(uri)
    if plugin is None:
        where = ", ".join(str(d) for d in search_path())
        raise ASPError(f"LV2 plugin {uri} of synth {spec.name!r} is not installed (looked in {where})")
    ports = []
    for p in spec.params:
        port = plugin.ports[p.index] if p.index < len(plugin.ports) else None
        if port is None or port.name != (p.label or p.name):
            raise ASPError(
                f"LV2 plugin {uri} ({plugin.bundle}) has no port for parameter {p.name!r} of {spec.name!r}"
                f" (input control port {p.index} is {port.name if port else 'missing'!r}); regenerate the spec "
                f"with `python data_generation/view_parameters.py --synth {spec.name} --write-spec`"
            )
        ports.append(port)
    return uri, tuple(ports)


def port_value(port: Port, value: float, classes: int) -> float:
    """The port value for a normalized parameter value, as DawDreamer (JUCE's LV2 host) sets it:
    linear in the port's range for a continuous parameter; a categorical one's class ``k`` is
    its scale point ``k`` when the port lists one per class, else ``minimum + k * step``."""
    if classes < 2:
        return port.minimum + float(value) * (port.maximum - port.minimum)
    k = int(round(float(value) * (classes - 1)))
    if len(port.scale_points) == classes:
        return port.scale_points[k][1]
    return port.minimum + k * (port.maximum - port.minimum) / (classes - 1)


def preset_port_values(spec: SynthSpec, preset: np.ndarray) -> tuple[str, dict[str, float]]:
    """A preset's port values: (plugin URI, {port symbol: value in the plugin's units}).

    Args:
        spec: the synth.
        preset: (n_params,) normalized values.
    """
    uri, ports = plugin_ports(spec)
    preset = spec.snap(np.asarray(preset, dtype=np.float64))
    values = {port.symbol: port_value(port, v, p.classes) for p, port, v in zip(spec.params, ports, preset)}
    return uri, values


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def preset_from_bundle(spec: SynthSpec, path: str | Path) -> tuple[str, np.ndarray]:
    """Reads an LV2 preset bundle of a synth's plugin back into a preset (ports it leaves out take
    their defaults): ``read_preset_file`` does for ``.lv2`` folders.

    Returns:
        (its label, (n_params,) float64 normalized preset).

    Raises:
        ASPError: for a preset of another plugin, a port the plugin does not have, or a value
            outside its port's range or between a categorical port's classes.
    """
    preset = read_preset_bundle(path)
    uri, ports = plugin_ports(spec)
    if preset.plugin != uri:
        raise ASPError(f"LV2 preset {path} is for plugin {preset.plugin}, not for the {spec.name} plugin ({uri})")
    by_symbol = {port.symbol: (k, p, port) for k, (p, port) in enumerate(zip(spec.params, ports))}
    unknown = [symbol for symbol in preset.values if symbol not in by_symbol]
    if unknown:
        raise ASPError(
            f"LV2 preset {path} sets {', '.join(map(repr, unknown))}, which the {spec.name} plugin ({uri}) "
            "does not have (a preset for another version of the synth?)"
        )
    values = spec.defaults.copy()
    for symbol, value in preset.values.items():
        k, p, port = by_symbol[symbol]
        if p.categorical:
            options = [port_value(port, c / (p.classes - 1), p.classes) for c in range(p.classes)]
            c = int(np.argmin([abs(o - value) for o in options]))
            if abs(options[c] - value) > 1e-6 * max(1.0, abs(value)):
                raise ASPError(f"LV2 preset {path}: {symbol} = {value:g} is none of its classes {options}")
            values[k] = c / (p.classes - 1)
            continue
        normalized = (value - port.minimum) / (port.maximum - port.minimum)
        if not -1e-6 <= normalized <= 1 + 1e-6:
            raise ASPError(
                f"LV2 preset {path}: {symbol} = {value:g} is outside its range [{port.minimum:g}, {port.maximum:g}]"
            )
        values[k] = normalized
    return preset.label, spec.snap(values)


def _literal(text: str) -> str:
    """A Turtle string literal."""
    return '"' + "".join(_ESCAPES.get(c, c) for c in text) + '"'


def _decimal(value: float) -> str:
    """A Turtle number that reads back as exactly ``value`` (a float's shortest repr)."""
    value = float(value)
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value)}.0"
    text = repr(value)
    if "e" in text or "E" in text:
        return text if "." in text.split("e")[0] else text.replace("e", ".0e")
    return text


_VOCABULARY = {  # our two properties, defined in every file that uses them (lv2_validate wants a label)
    "synth": "The multi-task-asp synth (spec name) this plugin or preset was made for.",
    "specHash": "That synth's spec hash (it covers the Faust DSP code) when it was made.",
}
_PREFIXES = (
    f"@prefix asp: <{ASP_NS}> .\n@prefix lv2: <{LV2}> .\n@prefix pset: <{PSET}> .\n"
    f"@prefix rdf: <{RDF}> .\n@prefix rdfs: <{RDFS}> .\n\n"
)


def write_preset_bundle(path: str | Path, spec: SynthSpec, preset: np.ndarray, label: str) -> Path:
    """Writes a preset as an LV2 preset bundle (a folder: ``manifest.ttl`` and ``<name>.ttl``),
    atomically: a temp folder, then a rename; a bundle there before is replaced.

    Every parameter is one ``lv2:port [lv2:symbol; pset:value]`` in the plugin's own units
    (categorical ones as class numbers or scale point values), so a host sets every port.

    Args:
        path: the bundle folder, named ``*.lv2`` by convention (``preset_bundle_name``).
        spec: a Faust synth (the plugin ``build_plugin`` makes) or an LV2 synth (its plugin is read).
        preset: (n_params,) normalized values.
        label: the name hosts list it under.

    Returns:
        The bundle's folder.
    """
    path = Path(path)
    uri, values = preset_port_values(spec, preset)
    name = f"{_slug(path.name.removesuffix('.lv2'))}.ttl"
    manifest = f"{_PREFIXES}<{name}>\n    a pset:Preset ;\n    lv2:appliesTo <{uri}> ;\n    rdfs:seeAlso <{name}> .\n"
    ports = " , ".join(
        f"[\n        lv2:symbol {_literal(symbol)} ;\n        pset:value {_decimal(v)}\n    ]"
        for symbol, v in values.items()
    )
    body = (
        f"{_PREFIXES}<{name}>\n    a pset:Preset ;\n    lv2:appliesTo <{uri}> ;\n    rdfs:label {_literal(label)} ;\n"
        f"    rdfs:comment {_literal(f'made by multi-task-asp for {spec.name} (spec {spec.hash})')} ;\n"
        f"    asp:synth {_literal(spec.name)} ;\n    asp:specHash {_literal(spec.hash)} ;\n"
        f"    lv2:port {ports} .\n"
    )
    body += "".join(
        f"\nasp:{key}\n    a rdf:Property ;\n    rdfs:label {_literal(key)} ;\n    rdfs:comment {_literal(text)} .\n"
        for key, text in _VOCABULARY.items()
    )
    with atomic_folder(path) as tmp:
        (tmp / "manifest.ttl").write_text(manifest, encoding="utf-8")
        (tmp / name).write_text(body, encoding="utf-8")  # labels in any script
    return path


def write_match_bundle(folder: Path, spec: SynthSpec, preset: np.ndarray, target: str, stem: str) -> Path | None:
    """A match's preset bundle ``<target>.<stem>.lv2`` in ``folder``, labelled like its other
    preset files; None for a synth without an LV2 plugin (amsynth's VST keeps its ``.bank``) or
    whose LV2 plugin is not installed here (its ports cannot be read)."""
    if spec.backend not in ("faust", "lv2"):
        return None
    refined = stem.endswith(".refined")
    label = f"{target} ({spec.name}{', refined' if refined else ''})"
    try:
        return write_preset_bundle(folder / preset_bundle_name(target, stem), spec, preset, label)
    except ASPError:
        if spec.backend == "lv2":
            return None  # rendered without its Turtle (a plugin path given); the .params.json remains
        raise
