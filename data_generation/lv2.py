"""LV2: the built-in Faust synths as LV2 plugins, and every match as an LV2 preset bundle.

Plugins. ``build_plugin`` compiles a Faust synth's ``.dsp`` (the file the toolkit renders) with
Debian's ``faust2lv2`` into ``<name>.lv2``: an 8-voice instrument (MIDI in, stereo out) at the URI
``urn:multi-task-asp:lv2/<name>``. Its Turtle is then rewritten from the spec: port symbols are the
spec's parameter names (stable when a parameter is added, unlike faust2lv2's ``<label>_<index>``),
categorical parameters are integer ports (with named scale points where the spec names its
classes), the spec's ranges and defaults are checked against the ports (a disagreement is an
error), and the bundle records the synth and its spec hash (``asp:specHash``, which covers the
``.dsp`` code), so that a plugin built from an older DSP is found. ``install_plugin`` copies a
bundle into ``~/.lv2`` (or the first ``LV2_PATH`` folder).

Presets. ``write_preset_bundle`` writes a preset as an LV2 preset bundle (``manifest.ttl`` and the
preset's ``.ttl``: ``lv2:appliesTo`` the plugin, one ``lv2:port [lv2:symbol; pset:value]`` per
parameter in the plugin's own units), for a built-in synth or an LV2 plugin (Calf Monosynth, whose
ports are read from its installed Turtle). ``read_preset_bundle`` reads one back.

Rendering. ``render_preset_bundles`` plays preset bundles through the installed plugins in
DawDreamer (which loads LV2 plugins by URI from ``~/.lv2``, ``/usr/local/lib/lv2`` and
``/usr/lib/lv2``, never from ``LV2_PATH``), optionally in a child process whose home folder holds
the plugins to test (``lv2_home``). A render through the plugin equals the toolkit's up to float
rounding (the two Faust compilers' code differs): LSD at most 0.0016 (va), 0.0002 (fm) and 0.0003
(modal) on the 20 random presets of ``tests/test_lv2.py``, 0.007 on other seeds; a different
preset is 1 or more. Two hosts' event timing is matched: the toolkit
drives a Faust synth's gate by automation, which DawDreamer applies at block starts, so the note
sounds from the first block start at or after ``note_start`` (sample 11264, not 11025, at the
default 512-sample blocks); faust2lv2's plugins apply MIDI at the start of the block that holds
it, so the note is sent inside that block.

Turtle is read with rdflib; nothing here needs lilv, but ``lv2info`` (Debian's lilv-utils) lists
what was built and written.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np

from asp.errors import ASPError
from asp.files import atomic_folder, distinct_slug
from data_generation.render import Renderer, flushed_denormals, quiet_native_output
from data_generation.spec import SynthSpec, load_spec

URI_PREFIX = "urn:multi-task-asp:lv2"
ASP_NS = "urn:multi-task-asp:lv2#"  # our properties: asp:synth, asp:specHash
VOICES = 8  # polyphony of the built plugins (a "polyphony" port picks 1-8; its default is 4)
APT_PACKAGES = "faust g++ lv2-dev libboost-dev"  # what faust2lv2 needs (Debian 12)
INSTALL_HINT = "build and install the plugins with `make plugins-install`"
ROOT = Path(__file__).resolve().parent.parent

LV2 = "http://lv2plug.in/ns/lv2core#"
PSET = "http://lv2plug.in/ns/ext/presets#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
DOAP = "http://usefulinc.com/ns/doap#"


# ---------------------------------------------------------------------------------------
# where LV2 bundles live


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def search_path() -> list[Path]:
    """Where lilv (LV2 hosts, ``lv2info``) looks for bundles: ``LV2_PATH``, else its defaults."""
    if os.environ.get("LV2_PATH"):
        return [Path(p).expanduser() for p in os.environ["LV2_PATH"].split(os.pathsep) if p]
    return dawdreamer_path()


def dawdreamer_path() -> list[Path]:
    """Where DawDreamer (JUCE's LV2 host) loads plugins from by URI; ``LV2_PATH`` is not read."""
    return [_home() / ".lv2", Path("/usr/local/lib/lv2"), Path("/usr/lib/lv2")]


def install_dir() -> Path:
    """Where ``--install`` copies bundles: the first ``LV2_PATH`` folder, else ``~/.lv2``."""
    return search_path()[0] if os.environ.get("LV2_PATH") else _home() / ".lv2"


def plugin_uri(spec: SynthSpec) -> str:
    """The URI of a Faust synth's plugin (stable: the version lives in the bundle, not the URI)."""
    return f"{URI_PREFIX}/{class_name(spec)}"


def class_name(spec: SynthSpec) -> str:
    """The synth's name as faust2lv2 needs it (a C++ class, the binary's and the bundle's name)."""
    return re.sub(r"\W", "_", spec.name)


def preset_bundle_name(target: str, stem: str) -> str:
    """The folder name of a match's preset bundle: ``<target>.<stem>.lv2`` (``pluck.va.lv2``,
    ``pluck.va.refined.lv2``), unique among matches, so that many can be installed side by side
    (a target name that is not plain ASCII is made so and keeps a hash of itself: ``音`` and ``ö``
    get distinct names, see ``asp.files.distinct_slug``)."""
    return f"{distinct_slug(target)}.{stem}.lv2"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "preset"


# ---------------------------------------------------------------------------------------
# reading bundles (rdflib)


@dataclass(frozen=True)
class Port:
    """An input control port of an LV2 plugin."""

    index: int
    symbol: str
    name: str
    minimum: float
    maximum: float
    default: float
    integer: bool = False
    toggled: bool = False
    enumeration: bool = False
    scale_points: tuple[tuple[str, float], ...] = ()  # (label, value) sorted by value


@dataclass(frozen=True)
class Plugin:
    """What the toolkit needs of an installed LV2 plugin.

    Attributes:
        uri: the plugin's URI.
        bundle: the folder it was found in.
        ports: its input control ports in index order (DawDreamer's parameters, in that order).
        synth: the toolkit synth it was built from (``asp:synth``; None for other plugins).
        spec_hash: that synth's spec hash when it was built (``asp:specHash``).
    """

    uri: str
    bundle: Path
    ports: tuple[Port, ...]
    synth: str | None = None
    spec_hash: str | None = None

    def port(self, symbol: str) -> Port | None:
        return next((p for p in self.ports if p.symbol == symbol), None)


def _rdflib():
    import rdflib  # only what reads Turtle pays for the import

    return rdflib


def _parse(files: list[Path], what: str):
    """One rdflib graph of Turtle files; unreadable or invalid Turtle is an ``ASPError``."""
    rdflib = _rdflib()
    graph = rdflib.Graph()
    for path in files:
        try:
            graph.parse(path, format="turtle", publicID=path.resolve().as_uri())
        except OSError as err:
            raise ASPError(f"cannot read {what} {path} ({err.strerror or err})") from None
        except Exception as err:  # rdflib's parse errors share no base class
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ASPError(f"{what} {path} is not valid Turtle ({first[:200]})") from None
    return graph


def _bundle_files(bundle: Path, what: str):
    """The graph of a bundle's ``manifest.ttl`` and every file it names with ``rdfs:seeAlso``."""
    manifest = bundle / "manifest.ttl"
    if not manifest.is_file():
        raise ASPError(f"{what} {bundle} not found (an LV2 bundle is a folder holding manifest.ttl)")
    graph = _parse([manifest], what)
    rdflib = _rdflib()
    extra = sorted({Path(url2pathname(urlparse(str(o)).path)) for o in graph.objects(None, rdflib.RDFS.seeAlso)})
    for path in extra:
        if not path.is_file():
            raise ASPError(f"{what} {bundle} is incomplete: manifest.ttl names {path.name}, which is missing")
    return _parse([manifest, *extra], what)


def _number(node) -> float | None:
    try:
        return float(node.toPython()) if node is not None else None
    except (TypeError, ValueError):
        return None


def read_plugin(bundle: Path, uri: str | None = None) -> Plugin:
    """Reads an LV2 plugin bundle's Turtle (the plugin ``uri``, or the bundle's one plugin).

    Raises:
        ASPError: for a missing or damaged bundle, or one without that plugin.
    """
    rdflib = _rdflib()
    lv2, rdf = rdflib.Namespace(LV2), rdflib.RDF
    graph = _bundle_files(Path(bundle), "LV2 plugin bundle")
    plugins = sorted(str(s) for s in graph.subjects(rdf.type, lv2.Plugin))
    if uri is None and len(plugins) == 1:
        uri = plugins[0]
    if uri not in plugins:
        raise ASPError(f"LV2 bundle {bundle} holds no plugin {uri or '(none named)'}; it holds {plugins or 'none'}")
    node = rdflib.URIRef(uri)
    ports = []
    for port in graph.objects(node, lv2.port):
        types = set(graph.objects(port, rdf.type))
        if lv2.ControlPort not in types or lv2.InputPort not in types:
            continue
        props = set(graph.objects(port, lv2.portProperty))
        points = []
        for point in graph.objects(port, lv2.scalePoint):
            value = _number(graph.value(point, rdf.value))
            if value is not None:
                points.append((str(graph.value(point, rdflib.RDFS.label)), value))
        index = _number(graph.value(port, lv2["index"]))
        low, high = _number(graph.value(port, lv2.minimum)), _number(graph.value(port, lv2.maximum))
        default = _number(graph.value(port, lv2.default))
        ports.append(
            Port(
                index=int(index if index is not None else -1),
                symbol=str(graph.value(port, lv2.symbol)),
                name=str(graph.value(port, lv2.name) or graph.value(port, lv2.symbol)),
                minimum=0.0 if low is None else low,
                maximum=1.0 if high is None else high,
                default=(0.0 if low is None else low) if default is None else default,
                integer=lv2.integer in props,
                toggled=lv2.toggled in props,
                enumeration=lv2.enumeration in props,
                scale_points=tuple(sorted(points, key=lambda p: p[1])),
            )
        )
    asp = rdflib.Namespace(ASP_NS)
    synth, spec_hash = graph.value(node, asp.synth), graph.value(node, asp.specHash)
    return Plugin(
        uri=uri,
        bundle=Path(bundle),
        ports=tuple(sorted(ports, key=lambda p: p.index)),
        synth=None if synth is None else str(synth),
        spec_hash=None if spec_hash is None else str(spec_hash),
    )


def find_plugin(uri: str, dirs: list[Path] | None = None) -> Plugin | None:
    """The installed plugin ``uri``: the first bundle in ``dirs`` (default ``search_path()``)
    whose manifest names it, or None."""
    for folder in search_path() if dirs is None else dirs:
        if not folder.is_dir():
            continue
        for bundle in sorted(folder.iterdir()):
            manifest = bundle / "manifest.ttl"
            try:
                named = f"<{uri}>" in manifest.read_text(errors="replace")
            except OSError:
                continue
            if named:
                return read_plugin(bundle, uri)
    return None


@lru_cache(maxsize=16)
def _installed(uri: str) -> Plugin | None:
    return find_plugin(uri)


@dataclass(frozen=True)
class PresetBundle:
    """An LV2 preset: its label, the plugin it applies to, and its port values by symbol."""

    path: Path
    label: str
    plugin: str
    values: dict[str, float]
    synth: str | None = None
    spec_hash: str | None = None


def read_preset_bundle(path: str | Path) -> PresetBundle:
    """Reads an LV2 preset bundle (one ``pset:Preset``; ours, or one a host saved).

    Raises:
        ASPError: for a missing or damaged bundle, none or several presets, or a port without
            a symbol or a numeric value.
    """
    rdflib = _rdflib()
    path = Path(path)
    lv2, pset = rdflib.Namespace(LV2), rdflib.Namespace(PSET)
    graph = _bundle_files(path, "LV2 preset bundle")
    presets = sorted(set(graph.subjects(rdflib.RDF.type, pset.Preset)))
    if len(presets) != 1:
        raise ASPError(f"LV2 preset bundle {path} holds {len(presets)} presets; expected one")
    node = presets[0]
    plugin = graph.value(node, lv2.appliesTo)
    if plugin is None:
        raise ASPError(f"LV2 preset bundle {path} does not say which plugin it is for (lv2:appliesTo)")
    values = {}
    for port in graph.objects(node, lv2.port):
        symbol, value = graph.value(port, lv2.symbol), _number(graph.value(port, pset.value))
        if symbol is None or value is None or not math.isfinite(value):
            raise ASPError(f"LV2 preset bundle {path} has a port without a symbol or a finite pset:value")
        values[str(symbol)] = value
    asp = rdflib.Namespace(ASP_NS)
    synth, spec_hash = graph.value(node, asp.synth), graph.value(node, asp.specHash)
    return PresetBundle(
        path=path,
        label=str(graph.value(node, rdflib.RDFS.label) or path.stem),
        plugin=str(plugin),
        values=values,
        synth=None if synth is None else str(synth),
        spec_hash=None if spec_hash is None else str(spec_hash),
    )


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


# ---------------------------------------------------------------------------------------
# building and installing plugins


@dataclass(frozen=True)
class PluginStatus:
    """Whether a synth's plugin is installed where DawDreamer and hosts find it, and current."""

    uri: str
    plugin: Plugin | None
    current: bool

    def hint(self, spec: SynthSpec) -> str:
        if self.plugin is None:
            return f"the {spec.name} plugin is not installed: {INSTALL_HINT}"
        if not self.current:
            return (
                f"the {spec.name} plugin in {self.plugin.bundle} was built from an older {spec.name} "
                f"(spec {self.plugin.spec_hash}, now {spec.hash}): {INSTALL_HINT}"
            )
        return f"the {spec.name} plugin is installed ({self.plugin.bundle})"


def plugin_status(spec: SynthSpec, dirs: list[Path] | None = None) -> PluginStatus:
    """The installed plugin of a Faust synth (first in ``dirs``, default ``search_path()``)."""
    uri = plugin_uri(spec)
    plugin = find_plugin(uri, dirs)
    return PluginStatus(uri, plugin, plugin is not None and plugin.spec_hash == spec.hash)


def check_tools() -> None:
    """Raises an ``ASPError`` naming the Debian packages when faust2lv2 or a C++ compiler is missing."""
    missing = [tool for tool in ("faust", "faust2lv2", "g++") if shutil.which(tool) is None]
    if missing:
        raise ASPError(
            f"{' and '.join(missing)} not found: building LV2 plugins needs Debian's faust, a C++ "
            f"compiler, the LV2 and Boost headers: `sudo apt-get install {APT_PACKAGES}`"
        )


def _faust_error(output: str) -> str:
    if "No such file" in output and ("lv2/lv2plug.in" in output or "lv2/core" in output):
        return f"the LV2 headers are missing: `sudo apt-get install lv2-dev` (all it needs: {APT_PACKAGES})"
    if "boost/" in output and "No such file" in output:
        return f"the Boost headers are missing: `sudo apt-get install libboost-dev` (all it needs: {APT_PACKAGES})"
    lines = [line.strip() for line in output.splitlines() if "error" in line.lower()]
    return (lines or [line.strip() for line in output.splitlines() if line.strip()] or ["no output"])[0][:300]


def _rewrite_plugin_ttl(spec: SynthSpec, ttl: Path, uri: str) -> None:
    """faust2lv2's Turtle made to follow the spec (see the module docstring); refuses a DSP whose
    sliders disagree with the spec's ranges or defaults."""
    rdflib = _rdflib()
    lv2, doap, asp, rdf = rdflib.Namespace(LV2), rdflib.Namespace(DOAP), rdflib.Namespace(ASP_NS), rdflib.RDF
    graph = _rdflib().Graph().parse(ttl, format="turtle", publicID=_BASE + ttl.name)  # keeps <va.so> relative
    node = rdflib.URIRef(uri)
    controls = []
    for port in graph.objects(node, lv2.port):
        types = set(graph.objects(port, rdf.type))
        if lv2.ControlPort in types and lv2.InputPort in types:
            controls.append((int(graph.value(port, lv2["index"])), port))
    controls.sort(key=lambda c: c[0])
    names = [str(graph.value(port, lv2.name)) for _, port in controls]
    expected = [p.label or p.name for p in spec.params]
    if names[: len(expected)] != expected or names[len(expected) :] != ["polyphony"]:
        raise ASPError(
            f"spec of {spec.name!r} is out of date with {spec.resolve_source()}: the DSP has parameters "
            f"{names[:-1]}; regenerate it with `python data_generation/view_parameters.py --synth "
            f"{spec.name} --write-spec`"
        )
    for p, port, (_, node_port) in zip(spec.params, _spec_ports(spec), controls):
        got = [_number(graph.value(node_port, key)) for key in (lv2.minimum, lv2.maximum, lv2.default)]
        want = [port.minimum, port.maximum, port.default]
        if any(g is None or abs(g - w) > 1e-4 * max(1.0, abs(w)) for g, w in zip(got, want)):
            raise ASPError(
                f"spec of {spec.name!r} disagrees with {spec.resolve_source()} on {p.name!r}: the DSP's slider "
                f"has minimum, maximum, default {got}, the spec {want}; fix the spec's native_range or default"
            )
        graph.set((node_port, lv2.symbol, rdflib.Literal(p.name)))
        graph.set((node_port, lv2.name, rdflib.Literal(p.label or p.name)))
        if p.categorical:
            graph.add((node_port, lv2.portProperty, lv2.integer))
        if port.scale_points:
            graph.add((node_port, lv2.portProperty, lv2.enumeration))
            for label, value in port.scale_points:
                point = rdflib.BNode()
                graph.add((node_port, lv2.scalePoint, point))
                graph.add((point, rdflib.RDFS.label, rdflib.Literal(label)))
                graph.add((point, rdf.value, rdflib.Literal(value)))
    version = str(graph.value(node, doap.revision) or "0")
    graph.remove((node, doap.revision, None))
    release = rdflib.BNode()
    graph.add((node, rdf.type, doap.Project))
    graph.add((node, doap.release, release))
    graph.add((release, rdf.type, doap.Version))
    graph.add((release, doap.revision, rdflib.Literal(f"{version}+{spec.hash}")))
    graph.add((node, asp.synth, rdflib.Literal(spec.name)))
    graph.add((node, asp.specHash, rdflib.Literal(spec.hash)))
    graph.add(
        (
            node,
            rdflib.RDFS.comment,
            rdflib.Literal(f"{spec.description} Built from {Path(spec.resolve_source()).name} (spec {spec.hash}).")
            if spec.description
            else rdflib.Literal(f"Built from {Path(spec.resolve_source()).name} (spec {spec.hash})."),
        )
    )
    for key, text in _VOCABULARY.items():
        graph.add((asp[key], rdf.type, rdf.Property))
        graph.add((asp[key], rdflib.RDFS.label, rdflib.Literal(key)))
        graph.add((asp[key], rdflib.RDFS.comment, rdflib.Literal(text)))
    graph.bind("asp", ASP_NS)
    text = graph.serialize(format="turtle", base=_BASE)
    ttl.write_text("".join(line for line in text.splitlines(keepends=True) if not line.startswith("@base ")))


_BASE = "http://bundle.invalid/"  # a stand-in for the bundle's folder while rdflib edits its Turtle


def build_plugin(spec: SynthSpec, out: str | Path, *, voices: int = VOICES) -> Path:
    """Compiles a Faust synth into the LV2 bundle ``<out>/<name>.lv2`` with faust2lv2.

    The bundle replaces one there before (atomically: built in a temp folder, then renamed).

    Args:
        spec: a Faust synth.
        out: the folder to write the bundle into (made if missing).
        voices: maximum polyphony.

    Returns:
        The bundle's folder.

    Raises:
        ASPError: for a synth that is not a Faust synth, missing tools or headers (naming the
            Debian packages), a DSP that does not compile, or a spec that disagrees with its DSP.
    """
    if spec.backend != "faust":
        raise ASPError(f"synth {spec.name!r} is a {spec.backend.upper()} plugin already; only Faust synths are built")
    check_tools()
    source = Path(spec.resolve_source())
    cls = class_name(spec)
    uri = plugin_uri(spec)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="asp-lv2-") as work:
        shutil.copy(source, Path(work) / f"{cls}.dsp")
        cmd = ["faust2lv2", "-nvoices", str(voices), "-notuning", "-uri-prefix", URI_PREFIX]
        cmd += ["-I", str(source.parent), f"{cls}.dsp"]
        try:
            done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise ASPError(f"faust2lv2 took more than 15 minutes on {spec.name!r}; nothing was written") from None
        bundle = Path(work) / f"{cls}.lv2"
        if done.returncode != 0 or not (bundle / f"{cls}.ttl").is_file():
            raise ASPError(
                f"faust2lv2 could not build {spec.name!r} ({source}): {_faust_error(done.stdout + done.stderr)}"
            )
        _rewrite_plugin_ttl(spec, bundle / f"{cls}.ttl", uri)
        read_plugin(bundle, uri)  # what hosts will read: it must parse
        out.mkdir(parents=True, exist_ok=True)
        with atomic_folder(out / f"{cls}.lv2") as tmp:
            for item in sorted(bundle.iterdir()):
                shutil.copy2(item, tmp / item.name)
    return out / f"{cls}.lv2"


def install_plugin(bundle: str | Path, dest: str | Path | None = None) -> Path:
    """Copies a built bundle into ``dest`` (default ``install_dir()``), replacing an older build
    of the same plugin; a folder of that name holding anything else is refused, never deleted.

    Returns:
        The installed bundle's folder.
    """
    bundle = Path(bundle)
    plugin = read_plugin(bundle)
    if plugin.spec_hash is None:
        raise ASPError(f"{bundle} was not built by the toolkit (no asp:specHash); install it yourself")
    dest = Path(dest) if dest is not None else install_dir()
    target = dest / bundle.name
    if target.exists():
        try:
            ours = read_plugin(target, plugin.uri).spec_hash is not None
        except ASPError:
            ours = False
        if not ours:
            raise ASPError(f"{target} exists and is not a plugin the toolkit built; move it away, nothing was changed")
    with atomic_folder(target) as tmp:
        for item in sorted(bundle.iterdir()):
            shutil.copy2(item, tmp / item.name)
    _installed.cache_clear()
    return target


# ---------------------------------------------------------------------------------------
# rendering through the plugins


def _note_times(spec: SynthSpec) -> tuple[float, float]:
    """(start, duration) in seconds of the MIDI note that sounds like the toolkit's render."""
    r = spec.render
    if spec.backend != "faust":
        return r.note_start, r.note_duration
    block, rate = r.block_size, r.sample_rate
    on = math.ceil(round(r.note_start * rate, 6) / block)
    off = math.ceil(round((r.note_start + r.note_duration) * rate, 6) / block)
    return (on * block + block // 2) / rate, (off - on) * block / rate


def _normalized(port: Port, value: float) -> float:
    """The DawDreamer parameter value that sets a port to ``value``."""
    if port.enumeration and len(port.scale_points) >= 2:
        values = [v for _, v in port.scale_points]
        k = int(np.argmin([abs(v - value) for v in values]))
        return k / (len(values) - 1)
    return (value - port.minimum) / (port.maximum - port.minimum)


def _render_bundles(paths: list[Path], note: int | None = None) -> np.ndarray:
    """Renders preset bundles through their plugins, in this process: (n, samples) float32."""
    import dawdreamer as daw  # DawDreamer's module itself: only rendering through plugins needs it

    engines: dict[str, object] = {}
    out = []
    for count, path in enumerate(paths):
        preset = read_preset_bundle(path)
        synth = preset.synth
        if synth is None:
            raise ASPError(f"LV2 preset bundle {path} was not written by the toolkit (no asp:synth)")
        spec = load_spec(synth)
        plugin = find_plugin(preset.plugin, dawdreamer_path())
        if plugin is None:
            where = ", ".join(str(d) for d in dawdreamer_path())
            raise ASPError(
                f"plugin {preset.plugin} is not installed where DawDreamer loads plugins ({where}); {INSTALL_HINT}"
            )
        if plugin.spec_hash is not None and plugin.spec_hash != spec.hash:
            raise ASPError(plugin_status(spec, [plugin.bundle.parent]).hint(spec))
        missing = [s for s in preset.values if plugin.port(s) is None]
        if missing:
            raise ASPError(
                f"preset {path} sets {', '.join(map(repr, missing))}, which plugin {plugin.uri} ({plugin.bundle}) does "
                f"not have; {INSTALL_HINT}, or match the sound again"
            )
        r = spec.render
        engine = engines.setdefault(synth, daw.RenderEngine(r.sample_rate, r.block_size))
        with quiet_native_output():
            proc = engine.make_plugin_processor(f"lv2_{count}", plugin.uri)
            n = r.num_samples + 2 * r.block_size
            for k, port in enumerate(plugin.ports):  # DawDreamer applies LV2 values as automation only
                value = preset.values.get(port.symbol, port.default)
                proc.set_automation(k, np.full(n, _normalized(port, value), dtype=np.float32))
            start, held = _note_times(spec)
            proc.add_midi_note(r.note if note is None else note, r.velocity, start, held)
            engine.load_graph([(proc, [])])
            with flushed_denormals():
                engine.render(r.duration)
        audio = engine.get_audio().mean(axis=0)[: r.num_samples].astype(np.float32)
        out.append(np.pad(audio, (0, r.num_samples - audio.shape[0])))
        engine.remove_processor(f"lv2_{count}")
    return np.stack(out) if out else np.zeros((0, 0), dtype=np.float32)


def render_preset_bundles(
    paths: list[str | Path], *, note: int | None = None, lv2_home: str | Path | None = None
) -> np.ndarray:
    """Plays preset bundles through the installed plugins they apply to (DawDreamer, by URI):
    the synth's note (its spec's render settings), one fresh plugin instance per preset.

    Args:
        paths: preset bundles written by ``write_preset_bundle``, all of synths of one render length.
        note: the MIDI note to play (default: the synth's, 60; a match's is in its ``match.json``).
        lv2_home: render in a child process whose home folder is this one, so that DawDreamer
            loads the plugins in ``<lv2_home>/.lv2`` (and the system's) instead of the user's.

    Returns:
        (n, samples) float32 mono audio.

    Raises:
        ASPError: for a missing bundle, a plugin that is not installed or was built from an
            older DSP, or a preset setting a port the plugin does not have.
    """
    paths = [Path(p).resolve() for p in paths]
    if note is not None and not 0 <= note <= 127:
        raise ASPError(f"MIDI note must be 0-127, got {note}")
    if lv2_home is None:
        return _render_bundles(paths, note)
    with tempfile.TemporaryDirectory(prefix="asp-lv2-render-") as work:
        result = Path(work) / "audio.npy"
        env = {**os.environ, "HOME": str(Path(lv2_home).resolve())}
        code = "import sys; from data_generation.lv2 import _render_main; _render_main(sys.argv[1:])"
        done = subprocess.run(
            [sys.executable, "-c", code, str(result), str(-1 if note is None else note), *map(str, paths)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            message = next((line for line in reversed(lines) if line.startswith("error: ")), None)
            if message:
                raise ASPError(message.removeprefix("error: "))
            raise RuntimeError(f"rendering through the plugins failed: {' / '.join(lines[-5:])}")
        return np.load(result)


def _render_main(args: list[str]) -> None:
    """The child process of ``render_preset_bundles``: renders, saves the audio, or prints one error line."""
    try:
        note = int(args[1])
        audio = _render_bundles([Path(p) for p in args[2:]], None if note < 0 else note)
    except ASPError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    np.save(args[0], audio)


def install_lines(folder: Path) -> list[str]:
    """What ``run_inference.py`` prints about a match's LV2 preset bundles: where they are, the
    command that installs them, and whether the built-in synths' plugins are installed and current."""
    bundles = sorted(b for b in Path(folder).glob("*.lv2") if b.is_dir())
    if not bundles:
        return []
    dest = install_dir()
    shown = f"~/{dest.relative_to(_home())}" if dest.is_relative_to(_home()) else str(dest)
    lines = [f"LV2 presets: {', '.join(b.name for b in bundles)}; for a DAW: cp -r {folder}/*.lv2 {shown}/"]
    synths = sorted({b.name.split(".")[1] for b in bundles if b.name.count(".") >= 2})
    for name in synths:
        try:
            spec = load_spec(name)
        except ASPError:
            continue
        if spec.backend == "faust":
            status = plugin_status(spec)
            if not status.current:
                lines.append(status.hint(spec))
    return lines


def validate(bundle: Path, uri: str) -> str | None:
    """Has lilv's ``lv2info`` (Debian's lilv-utils) read the bundle: the plugin found, its binary
    named, no error, every input control port listed. Returns its listing, or None without lv2info.

    Raises:
        ASPError: naming what lv2info found wrong.
    """
    if shutil.which("lv2info") is None:
        return None
    env = {**os.environ, "LV2_PATH": str(Path(bundle).resolve().parent)}
    done = subprocess.run(["lv2info", uri], capture_output=True, text=True, env=env, timeout=120)
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    if done.returncode != 0 or errors or f"Bundle:            {Path(bundle).resolve().as_uri()}" not in done.stdout:
        raise ASPError(f"lv2info does not accept {bundle}: {(errors or done.stderr.splitlines() or ['not found'])[0]}")
    ports = read_plugin(bundle, uri).ports
    listed = re.findall(r"Symbol:\s+(\S+)", done.stdout)
    if not {p.symbol for p in ports} <= set(listed):
        raise ASPError(
            f"lv2info lists other ports than {bundle}'s Turtle: {sorted({p.symbol for p in ports} - set(listed))}"
        )
    return done.stdout


def compare_renders(spec: SynthSpec, bundle: Path, presets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renders presets with the toolkit and through a built plugin (as preset bundles, in a child
    process whose ``~/.lv2`` holds only a copy of ``bundle``): the known answer that they agree.

    Args:
        spec: the Faust synth.
        bundle: its built plugin (``build_plugin``).
        presets: (n, n_params) normalized.

    Returns:
        (toolkit, plugin) audio, each (n, samples) float32.
    """
    with tempfile.TemporaryDirectory(prefix="asp-lv2-check-") as work:
        home = Path(work)
        install_plugin(bundle, home / ".lv2")
        paths = [
            write_preset_bundle(home / f"preset{k}.lv2", spec, preset, f"check {k}") for k, preset in enumerate(presets)
        ]
        through_plugin = render_preset_bundles(paths, lv2_home=home)
    _installed.cache_clear()
    return Renderer().render_batch(spec, presets), through_plugin
