"""Building the built-in Faust synths as LV2 plugins (``faust2lv2``, the Turtle rewritten from the
spec), installing them, checking them with ``lv2info``, and whether they are installed and current."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from asp.errors import ASPError
from asp.files import atomic_folder
from data_generation.lv2.bundles import (
    APT_PACKAGES,
    ASP_NS,
    DOAP,
    INSTALL_HINT,
    LV2,
    URI_PREFIX,
    VOICES,
    Plugin,
    _home,
    _installed,
    _number,
    _rdflib,
    class_name,
    find_plugin,
    install_dir,
    plugin_uri,
    read_plugin,
)
from data_generation.lv2.presets import _VOCABULARY, _spec_ports
from data_generation.spec import SynthSpec, load_spec

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
