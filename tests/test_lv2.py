"""LV2: the built-in synths built as plugins (faust2lv2), matches written as LV2 preset bundles,
and the known answer that a render through the built plugin equals the toolkit's.

Tests that build plugins need Debian's faust, g++, lv2-dev and libboost-dev; those that read
bundles with lilv's tools need lilv-utils (lv2info) and sordi. Each skips with the reason when
they are missing (CI installs them all). The plugins are built once per session (about 10 s each).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_calf

from asp.errors import ASPError
from asp.metrics import log_spectral_distance
from data_generation import lv2
from data_generation.presets import random_presets, read_preset_file
from data_generation.render import Renderer, quiet_native_output, rms
from data_generation.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
BUILT_IN = ("va", "fm", "modal")
KNOWN_ANSWER_PRESETS = 20
LSD_BOUND = 0.05

needs_sordi = pytest.mark.skipif(
    shutil.which("sordi") is None, reason="sordi is not installed (apt-get install sordi; CI installs it)"
)
needs_lv2info = pytest.mark.skipif(
    shutil.which("lv2info") is None, reason="lv2info is not installed (apt-get install lilv-utils; CI installs it)"
)


def sordi_ports(bundle: Path) -> tuple[dict[str, float], dict[str, str]]:
    """A preset bundle read by Debian's sordi (the sord RDF store lilv is built on): its port values
    by symbol, and its preset's other properties {predicate: object}, from N-Triples."""
    triples = []
    for ttl in sorted(bundle.glob("*.ttl")):
        done = subprocess.run(["sordi", "-i", "turtle", "-o", "ntriples", str(ttl)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        for line in done.stdout.splitlines():
            m = re.match(r'(\S+) <([^>]+)> (<[^>]*>|"(?:[^"\\]|\\.)*"(?:\^\^<[^>]+>|@\S+)?|\S+) \.$', line)
            assert m, line
            triples.append(m.groups())
    by_subject: dict[str, dict[str, str]] = {}
    for s, p, o in triples:
        by_subject.setdefault(s, {})[p] = o
    symbols, values = {}, {}
    for s, props in by_subject.items():
        if lv2.LV2 + "symbol" in props:
            symbol = props[lv2.LV2 + "symbol"].split('"')[1]
            values[symbol] = float(props[lv2.PSET + "value"].split('"')[1])
            symbols[s] = symbol
    preset = next(props for props in by_subject.values() if props.get(lv2.RDF + "type") == f"<{lv2.PSET}Preset>")
    return values, preset


# ---------------------------------------------------------------------------------------
# preset bundles (no plugin build needed)


@needs_sordi
@pytest.mark.parametrize("synth", BUILT_IN)
def test_preset_bundle_holds_every_native_value(synth, tmp_path):
    spec = load_spec(synth)
    preset = random_presets(spec, 1, np.random.default_rng(3))[0]
    bundle = lv2.write_preset_bundle(tmp_path / f"pluck.{synth}.lv2", spec, preset, f'pluck "{synth}"\tone')
    assert sorted(p.name for p in bundle.iterdir()) == ["manifest.ttl", f"pluck-{synth}.ttl"]
    values, props = sordi_ports(bundle)
    native = spec.to_native(preset)
    assert values == {p.name: float(v) for p, v in zip(spec.params, native)}  # exactly, every parameter
    for p in spec.params:
        if p.categorical:
            assert values[p.name] == int(values[p.name])
    assert props[lv2.LV2 + "appliesTo"] == f"<urn:multi-task-asp:lv2/{synth}>"
    assert props[lv2.RDFS + "label"] == f'"pluck \\"{synth}\\"\\tone"'
    assert props[lv2.ASP_NS + "specHash"] == f'"{spec.hash}"'
    read = lv2.read_preset_bundle(bundle)  # the toolkit's own reader agrees
    assert read.values == values and read.plugin == lv2.plugin_uri(spec) and read.label == f'pluck "{synth}"\tone'
    assert (read.synth, read.spec_hash) == (synth, spec.hash)


@pytest.mark.parametrize("synth", [*BUILT_IN, pytest.param("calf_monosynth", marks=needs_calf)])
def test_a_preset_bundle_reads_back_as_its_preset(synth, tmp_path):
    """read_preset_file (every tool's reader, render_presets.py --preset-file) takes a bundle."""
    spec = load_spec(synth)
    presets = random_presets(spec, 5, np.random.default_rng(7))
    for k, preset in enumerate(presets):
        bundle = lv2.write_preset_bundle(tmp_path / f"p{k}.lv2", spec, preset, f"p {k}")
        names, read = read_preset_file(spec, bundle)
        assert names == [f"p {k}"]
        np.testing.assert_allclose(read[0], spec.snap(preset), rtol=0, atol=1e-12)
    other = load_spec("fm" if synth == "va" else "va")
    with pytest.raises(ASPError, match=rf"is for plugin .*, not for the {other.name} plugin"):
        read_preset_file(other, tmp_path / "p0.lv2")
    ttl = next(f for f in (tmp_path / "p0.lv2").glob("*.ttl") if f.name != "manifest.ttl")
    first = lv2.plugin_ports(spec)[1][0].symbol
    ttl.write_text(ttl.read_text().replace(f'lv2:symbol "{first}"', 'lv2:symbol "chorus_depth"', 1))
    with pytest.raises(ASPError, match=rf"sets 'chorus_depth', which the {synth} plugin \(.*\) does not have"):
        read_preset_file(spec, tmp_path / "p0.lv2")


@needs_calf
def test_calf_preset_bundle_ports_are_what_dawdreamer_sets(tmp_path):
    """A Calf match's bundle: Calf's own port symbols, each value the one DawDreamer (JUCE's LV2
    host) sets for the normalized value (its parameter text), categorical ones by scale point."""
    import dawdreamer as daw

    spec = load_spec("calf_monosynth")
    presets = random_presets(spec, 20, np.random.default_rng(2))
    engine = daw.RenderEngine(44100, 512)
    with quiet_native_output():
        proc = engine.make_plugin_processor("calf", spec.source)
    uri, ports = lv2.plugin_ports(spec)
    assert uri == spec.source and [p.symbol for p in ports][:3] == ["o1_wave", "o2_wave", "o1_pw"]
    for k, preset in enumerate(presets):
        bundle = lv2.write_preset_bundle(tmp_path / f"c{k}.lv2", spec, preset, f"calf {k}")
        values = lv2.read_preset_bundle(bundle).values
        assert list(values) == [p.symbol for p in ports]
        for p, port, v in zip(spec.params, ports, preset):
            proc.set_parameter(p.index, float(v))
            text = proc.get_parameter_text(p.index)
            text = text.encode("latin-1").decode("utf-8") if "Â" in text else text  # DawDreamer's degree signs
            value = values[port.symbol]
            if port.scale_points and not text.lstrip("-").replace(".", "", 1).isdigit():
                assert dict(port.scale_points)[text] == value, (p.name, text, value)
            elif port.toggled:
                assert text == ("On" if value else "Off"), (p.name, text, value)
            else:
                assert float(text) == pytest.approx(value, rel=1e-4, abs=1e-4), (p.name, text, value)


@needs_calf
def test_calf_presets_reach_the_plugin():
    """DawDreamer 0.9's LV2 host drops set_parameter values; the renderer automates them instead,
    so two Calf presets sound different (they all rendered Calf's default sound before)."""
    spec = load_spec("calf_monosynth")
    presets = random_presets(spec, 4, np.random.default_rng(0))
    audio = Renderer().render_batch(spec, presets)
    assert len({round(float(r), 5) for r in rms(audio)}) == 4
    volume = spec.names.index("volume")
    quiet, loud = spec.defaults.copy(), spec.defaults.copy()
    quiet[volume], loud[volume] = 0.1, 0.8
    renderer = Renderer()
    assert 4 < rms(renderer.render(spec, loud)) / rms(renderer.render(spec, quiet)) < 12


def test_preset_bundle_errors_are_one_line(tmp_path):
    with pytest.raises(ASPError, match=r"LV2 preset bundle .*nope\.lv2 not found \(an LV2 bundle is a folder holding"):
        lv2.read_preset_bundle(tmp_path / "nope.lv2")
    spec = load_spec("va")
    bundle = lv2.write_preset_bundle(tmp_path / "a.lv2", spec, spec.defaults, "a")
    (bundle / "a.ttl").unlink()
    with pytest.raises(ASPError, match="is incomplete: manifest.ttl names a.ttl, which is missing"):
        lv2.read_preset_bundle(bundle)
    (bundle / "a.ttl").write_text("<a.ttl> a <broken")
    with pytest.raises(ASPError, match="is not valid Turtle"):
        lv2.read_preset_bundle(bundle)
    with pytest.raises(ASPError, match="amsynth' is a VST plugin: it has no LV2 presets"):
        lv2.plugin_ports(load_spec("amsynth"))


def test_build_errors_name_the_fix(tmp_path):
    """Without the tools, and for a synth that is a plugin already: one line each, nothing built."""
    env = {**os.environ, "PATH": str(tmp_path)}  # no faust2lv2, no g++
    cmd = [sys.executable, "data_generation/build_plugins.py", "--out", str(tmp_path / "p")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "faust and faust2lv2 and g++ not found" in done.stderr
    assert "sudo apt-get install faust g++ lv2-dev libboost-dev" in done.stderr
    done = subprocess.run([*cmd, "--synths", "amsynth"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "only Faust synths are built as plugins; amsynth are plugins already" in done.stderr
    assert not (tmp_path / "p").exists()


# ---------------------------------------------------------------------------------------
# built plugins (faust2lv2)


def _build_tools_missing() -> str | None:
    try:
        lv2.check_tools()
    except ASPError as err:
        return str(err)
    for header, package in (
        ("/usr/include/lv2/core/lv2.h", "lv2-dev"),
        ("/usr/include/boost/circular_buffer.hpp", "libboost-dev"),
    ):
        if not Path(header).is_file():
            return f"{header} is missing (apt-get install {package}; CI installs it)"
    return None


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """va, fm and modal built once per session: {synth: bundle}."""
    missing = _build_tools_missing()
    if missing:
        pytest.skip(f"cannot build LV2 plugins: {missing}")
    out = tmp_path_factory.mktemp("plugins")
    return {name: lv2.build_plugin(load_spec(name), out) for name in BUILT_IN}


@needs_lv2info
def test_built_plugins_are_valid_and_follow_the_spec(built):
    for name, bundle in built.items():
        spec = load_spec(name)
        listing = lv2.validate(bundle, lv2.plugin_uri(spec))
        assert f"Name:              {name}" in listing and "InstrumentPlugin" in (bundle / f"{name}.ttl").read_text()
        plugin = lv2.read_plugin(bundle)
        assert plugin.uri == f"urn:multi-task-asp:lv2/{name}" and (plugin.synth, plugin.spec_hash) == (name, spec.hash)
        assert [p.symbol for p in plugin.ports] == [*spec.names, "polyphony"]
        for p, port in zip(spec.params, plugin.ports):
            assert (port.minimum, port.maximum) == p.native_range
            assert port.default == pytest.approx(
                p.native_range[0] + p.default * (p.native_range[1] - p.native_range[0])
            )
            assert port.integer == p.categorical
        assert sorted(f.name for f in bundle.iterdir()) == sorted(["manifest.ttl", f"{name}.so", f"{name}.ttl"])
        declared = re.search(r'declare version "([^"]+)"', Path(spec.resolve_source()).read_text())[1]
        assert f'doap:revision "{declared}+{spec.hash}"' in (bundle / f"{name}.ttl").read_text()
    if shutil.which("sord_validate") and Path("/usr/bin/lv2_validate").is_file():
        files = [str(f) for b in built.values() for f in sorted(b.glob("*.ttl"))]
        done = subprocess.run(["lv2_validate", *files], capture_output=True, text=True, timeout=300)
        assert "Found 0 errors" in done.stdout + done.stderr, (done.stdout + done.stderr)[-2000:]


@pytest.mark.parametrize("synth", BUILT_IN)
def test_render_through_the_built_plugin_equals_the_toolkits(built, synth):
    """The known answer: 20 random presets written as preset bundles, read back, applied to the
    built plugin's ports in DawDreamer (loaded by URI) sound like the toolkit's FaustProcessor."""
    spec = load_spec(synth)
    presets = random_presets(spec, KNOWN_ANSWER_PRESETS, np.random.default_rng(20))
    toolkit, plugin = lv2.compare_renders(spec, built[synth], presets)
    assert plugin.shape == toolkit.shape == (KNOWN_ANSWER_PRESETS, spec.render.num_samples)
    assert (rms(toolkit) > 1e-4).all()
    lsd = log_spectral_distance(toolkit, plugin)
    print(f"{synth}: LSD through the plugin, max {lsd.max():.4f}, mean {lsd.mean():.4f}")
    assert (lsd <= LSD_BOUND).all(), lsd
    # a different preset is far away: the bound tells presets apart
    assert log_spectral_distance(toolkit[0], plugin[1]) > 20 * LSD_BOUND


@needs_lv2info
def test_lv2info_lists_a_written_preset_with_its_plugin(built, tmp_path):
    spec = load_spec("fm")
    shutil.copytree(built["fm"], tmp_path / "fm.lv2")
    lv2.write_preset_bundle(tmp_path / "pluck.fm.lv2", spec, spec.defaults, "pluck (fm)")
    env = {**os.environ, "LV2_PATH": str(tmp_path)}
    done = subprocess.run(["lv2info", lv2.plugin_uri(spec)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and "error" not in done.stderr.lower(), done.stderr
    presets = done.stdout.split("Presets:")[1].split("Port 0:")[0]
    assert "pluck (fm)" in presets


def test_rendering_errors_name_the_fix(built, tmp_path, monkeypatch):
    spec = load_spec("va")
    home = tmp_path / "home"
    bundle = lv2.write_preset_bundle(tmp_path / "p.va.lv2", spec, spec.defaults, "p")
    with pytest.raises(ASPError, match=r"urn:multi-task-asp:lv2/va is not installed where DawDreamer loads plugins"):
        lv2.render_preset_bundles([bundle], lv2_home=home)
    lv2.install_plugin(built["va"], home / ".lv2")
    assert lv2.render_preset_bundles([bundle], lv2_home=home).shape == (1, spec.render.num_samples)
    # a preset with a parameter the plugin does not have
    edited = tmp_path / "e.va.lv2"
    shutil.copytree(bundle, edited)
    ttl = edited / "p-va.ttl"
    ttl.write_text(ttl.read_text().replace('lv2:symbol "volume"', 'lv2:symbol "chorus_depth"'))
    with pytest.raises(ASPError, match=r"sets 'chorus_depth', which plugin urn:multi-task-asp:lv2/va .* does not have"):
        lv2.render_preset_bundles([edited], lv2_home=home)
    # a missing bundle
    with pytest.raises(ASPError, match=r"gone\.lv2 not found"):
        lv2.render_preset_bundles([tmp_path / "gone.lv2"], lv2_home=home)
    # a plugin built from an older DSP: va.dsp edited after the plugin was built
    synths = tmp_path / "synths"
    shutil.copytree(Path(spec.path).parent / "faust", synths / "faust")
    shutil.copy(spec.path, synths / "va.json")
    with open(synths / "faust" / "va.dsp", "a") as f:
        f.write("// an edit after the plugin was built\n")
    monkeypatch.setenv("ASP_SYNTH_PATH", str(synths))
    newer = load_spec(synths / "va.json")
    assert newer.hash != spec.hash
    bundle = lv2.write_preset_bundle(tmp_path / "n.va.lv2", newer, newer.defaults, "n")
    older = rf"va plugin in .* was built from an older va \(spec {spec.hash}, now {newer.hash}\): build and install"
    with pytest.raises(ASPError, match=older + r" the plugins with `make plugins-install`"):
        lv2.render_preset_bundles([bundle], lv2_home=home)
    status = lv2.plugin_status(newer, [home / ".lv2"])
    assert status.plugin is not None and not status.current
    assert lv2.plugin_status(spec, [home / ".lv2"]).current


def test_install_replaces_its_own_build_only(built, tmp_path):
    dest = tmp_path / "lv2"
    installed = lv2.install_plugin(built["modal"], dest)
    assert installed == dest / "modal.lv2" and (installed / "modal.so").is_file()
    assert lv2.install_plugin(built["modal"], dest) == installed  # an older build of ours: replaced
    foreign = tmp_path / "other"
    (foreign / "modal.lv2").mkdir(parents=True)
    (foreign / "modal.lv2" / "manifest.ttl").write_text("# someone else's\n")
    with pytest.raises(ASPError, match="exists and is not a plugin the toolkit built; move it away"):
        lv2.install_plugin(built["modal"], foreign)
    assert (foreign / "modal.lv2" / "manifest.ttl").read_text() == "# someone else's\n"


# ---------------------------------------------------------------------------------------
# a match writes its presets as bundles


@needs_sordi
def test_a_match_writes_lv2_presets_listed_and_printed(tiny_data, tiny_models, tmp_path):
    out = tmp_path / "o"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", HOME=str(tmp_path / "home"))
    args = ["-md", str(tiny_models), "-dd", str(tiny_data), "-l", "8", "-s", "0", "-a", "--out", str(out)]
    args += ["--refine-renders", "12", "--refine-synths", "fm", "--workers", "1"]
    done = subprocess.run(
        [sys.executable, "run_inference.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    target = json.loads((out / "match.json").read_text())["target"]
    bundles = sorted(p.name for p in out.glob("*.lv2"))
    assert bundles == sorted(
        [f"{target}.fm.lv2", f"{target}.fm.refined.lv2", f"{target}.modal.lv2", f"{target}.va.lv2"]
    )
    for stem in ("va", "fm", "modal", "fm.refined"):
        spec = load_spec(stem.split(".")[0])
        _, presets = read_preset_file(spec, out / f"{stem}.faust.json")  # the matched preset
        values, props = sordi_ports(out / f"{target}.{stem}.lv2")
        assert values == {p.name: float(v) for p, v in zip(spec.params, spec.to_native(presets[0]))}
        label = f"{target} ({spec.name}, refined)" if stem.endswith("refined") else f"{target} ({spec.name})"
        assert props[lv2.RDFS + "label"] == f'"{label}"'
    page = (out / "report.html").read_text()
    assert f'href="{target}.va.lv2/{target}-va.ttl"' in page
    assert f'href="{target}.fm.refined.lv2/{target}-fm-refined.ttl"' in page
    assert f"LV2 presets: {', '.join(bundles)}; for a DAW: cp -r {out}/*.lv2 ~/.lv2/" in done.stdout
    assert "the va plugin is not installed: build and install the plugins with `make plugins-install`" in done.stdout
    again = subprocess.run(  # its own output, bundles included, is replaced
        [sys.executable, "run_inference.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert again.returncode == 0, again.stderr[-2000:]
