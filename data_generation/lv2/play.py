"""Rendering preset bundles through the installed plugins (DawDreamer loads LV2 plugins by URI),
in this process or a child with another home folder, and the check that a built plugin plays as
the toolkit renders."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from asp.errors import ASPError
from data_generation.lv2.build import install_plugin, plugin_status
from data_generation.lv2.bundles import INSTALL_HINT, Port, _installed, dawdreamer_path, find_plugin, read_preset_bundle
from data_generation.lv2.presets import write_preset_bundle
from data_generation.render import Renderer, play_note, quiet_native_output
from data_generation.spec import SynthSpec, load_spec

# ---------------------------------------------------------------------------------------
# rendering through the plugins

ROOT = Path(__file__).resolve().parents[2]  # the repository (the child process runs there)


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
            midi = (r.note if note is None else note, r.velocity, start, held)
            out.append(play_note(engine, proc, r.duration, r.sample_rate, midi))
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
        code = "import sys; from data_generation.lv2.play import _render_main; _render_main(sys.argv[1:])"
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
