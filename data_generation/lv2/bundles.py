"""Where LV2 bundles live and how they are read (rdflib): a plugin's ports, an installed plugin by
URI, a preset bundle's values; the URIs and names the toolkit gives its plugins and bundles."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from asp.errors import ASPError
from asp.files import distinct_slug
from data_generation.spec import SynthSpec

URI_PREFIX = "urn:multi-task-asp:lv2"
ASP_NS = "urn:multi-task-asp:lv2#"  # our properties: asp:synth, asp:specHash
VOICES = 8  # polyphony of the built plugins (a "polyphony" port picks 1-8; its default is 4)
APT_PACKAGES = "faust g++ lv2-dev libboost-dev"  # what faust2lv2 needs (Debian 12)
INSTALL_HINT = "build and install the plugins with `make plugins-install`"

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
