"""Rendering: (spec, preset, MIDI note) -> mono float32 audio through DawDreamer.

Each synth gets one ``RenderEngine`` per process, reused for every render of that synth (a
DawDreamer engine that has rendered cannot take a new Faust processor, so synths do not share one).
Faust synths are compiled once and reused: DawDreamer clears their state before each render, so
the same preset renders bit-identically every time. A Faust spec with ``num_voices`` 0 (the
built-ins) is compiled monophonic and the renderer drives its ``freq``, ``gain`` (velocity / 127)
and ``gate`` controls: faster than DawDreamer's polyphonic mode, which also frees a released voice
at its first quiet sample and so cuts release tails. ``num_voices`` > 0 plays MIDI notes.

Plugins (VST2/VST3/LV2) keep state between renders (oscillator phases, noise generators, reverb
tails), so by default (``exact=True``) each render gets a fresh plugin instance in the synth's
engine, which makes renders bit-identical at
the cost of instantiating the plugin (~0.1 s for amsynth); ``exact=False`` reuses one instance
per synth, faster but a render then depends on what was rendered before.

``exact=False`` also compiles Faust synths vectorized (Faust's ``-vec``): va and fm render 25-35%
faster (37 -> 28 ms and 42 -> 27 ms for a 5 s note on one core here; modal the same), and the
audio differs from the scalar build by float rounding only (at most about 0.01 in a sample, LSD
between the two builds below 0.001 over 40 random presets of each built-in). Datasets and every
rendered output use the scalar build (``exact=True``); the search renders its candidates with the
fast one and re-renders what it returns exactly.

Renders run with flush-to-zero and denormals-are-zero on (x86-64 Linux), as audio hosts do: a
decaying filter or resonator tail otherwise spends its last seconds in denormal floats, which x86
computes 10-100x slower (the modal synth rendered some 5 s notes in 0.4-0.9 s instead of
20-30 ms). The audio changes by less than 1e-35.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
from collections.abc import Iterator

import dawdreamer as daw
import numpy as np
from tqdm import tqdm

from asp.errors import ASPError
from data_generation import dx7
from data_generation.spec import SynthSpec, load_spec

_FAUST_RESERVED = {"freq", "gain", "gate"}
_LIBC = ctypes.CDLL(None)
_FTZ_PLATFORM = sys.platform.startswith("linux") and platform.machine() == "x86_64"
_MXCSR_OFFSET = 28  # glibc's x86-64 fenv_t: the x87 environment (28 bytes), then MXCSR
_FTZ_DAZ = (1 << 15) | (1 << 6)  # MXCSR flush-to-zero and denormals-are-zero


@contextlib.contextmanager
def flushed_denormals() -> Iterator[bool]:
    """Flush-to-zero and denormals-are-zero on the calling thread for the block, then the previous
    mode back. Yields whether the mode is on: True on x86-64 Linux (glibc), False elsewhere, where
    renders are the same, only slower while a tail decays.

    Only around rendering: the Faust compiler's interval arithmetic asserts with it on.
    """
    if not _FTZ_PLATFORM:
        yield False
        return
    env = ctypes.create_string_buffer(64)  # larger than glibc's fenv_t (32 bytes)
    if _LIBC.fegetenv(env) != 0:
        yield False
        return
    saved = env.raw
    at = slice(_MXCSR_OFFSET, _MXCSR_OFFSET + 4)
    env[at] = (int.from_bytes(saved[at], "little") | _FTZ_DAZ).to_bytes(4, "little")
    on = _LIBC.fesetenv(env) == 0
    try:
        yield on
    finally:
        if on:
            _LIBC.fesetenv(ctypes.create_string_buffer(saved, len(saved)))


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Silences what native plugin code prints on the process's stdout/stderr (file descriptors)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        _LIBC.fflush(None)  # C stdio buffers would otherwise print after the restore
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _as_spec(spec: SynthSpec | str) -> SynthSpec:
    return spec if isinstance(spec, SynthSpec) else load_spec(spec)


FAST_FAUST_FLAGS = ["-vec"]  # Faust compiler flags of non-exact renders (see the module docstring)


def _preset_values(spec: SynthSpec, preset: np.ndarray | dict | None) -> np.ndarray:
    """A preset given to ``Renderer.render`` as (n_params,) normalized values (None: the defaults)."""
    if preset is None:
        return spec.defaults
    if isinstance(preset, dict):
        return spec.preset_from_dict(preset)
    values = np.asarray(preset, dtype=np.float64)
    if values.shape != (spec.n_params,):
        raise ASPError(f"a preset of {spec.name!r} must have {spec.n_params} values, got shape {values.shape}")
    return values


class Renderer:
    """Renders presets of any spec; holds the process's DawDreamer engines (one per synth).

    Args:
        exact: bit-identical renders: a fresh plugin instance per render, and Faust synths
            compiled scalar. False: one reused plugin instance, Faust compiled with ``-vec``
            (faster; differs by float rounding).
        plugin_paths: {synth name: plugin path or LV2 URI} overriding the specs' sources.
    """

    def __init__(self, *, exact: bool = True, plugin_paths: dict[str, str] | None = None):
        self.exact = exact
        self.plugin_paths = dict(plugin_paths or {})
        self._engines: dict[str, daw.RenderEngine] = {}
        self._faust: dict[str, tuple[object, list[str]]] = {}
        self._faust_voice: dict[str, dict[str, str]] = {}
        self._plugins: dict[str, object] = {}
        self._dexed: dict[str, object] = {}
        self._count = 0

    def engine(self, spec: SynthSpec) -> daw.RenderEngine:
        """The synth's engine, made on first use and reused for all its renders."""
        if spec.name not in self._engines:
            self._engines[spec.name] = daw.RenderEngine(spec.render.sample_rate, spec.render.block_size)
        return self._engines[spec.name]

    # -- processors ----------------------------------------------------------------------
    def _faust_processor(self, spec: SynthSpec):
        cached = self._faust.get(spec.name)
        if cached is not None:
            return cached
        source = spec.resolve_source(self.plugin_paths.get(spec.name))  # refuses --plugin for a Faust synth
        try:
            os.getcwd()
        except FileNotFoundError:  # DawDreamer's Faust compiler segfaults without a working folder
            raise ASPError(
                f"cannot compile faust synth {spec.name!r}: the current folder was deleted; cd to a folder that exists"
            ) from None
        proc = self.engine(spec).make_faust_processor(f"faust_{spec.name}")
        proc.num_voices = spec.num_voices
        if not self.exact:
            proc.compile_flags = FAST_FAUST_FLAGS
        try:
            with open(source) as f:
                proc.set_dsp_string(f.read())
            proc.compile()
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else "compile error"
            raise ASPError(f"faust synth {spec.name!r} does not compile ({source}): {first}") from None
        described = proc.get_parameters_description()
        if spec.num_voices == 0:
            voice = {d["label"]: d["name"] for d in described if d["label"] in _FAUST_RESERVED}
            if set(voice) != _FAUST_RESERVED:
                raise ASPError(f"faust synth {spec.name!r} ({source}) must declare freq, gain and gate sliders")
            self._faust_voice[spec.name] = voice
        desc = [d for d in described if d["label"] not in _FAUST_RESERVED]
        labels = [d["label"] for d in desc]
        if labels != [p.label or p.name for p in spec.params]:
            raise ASPError(
                f"spec of {spec.name!r} is out of date with {source}: the DSP has parameters "
                f"{labels}; regenerate it with `python data_generation/view_parameters.py "
                f"--synth {spec.name} --write-spec`"
            )
        addresses = [d["name"] for d in desc]
        self._faust[spec.name] = (proc, addresses)
        return proc, addresses

    def _new_plugin(self, spec: SynthSpec):
        source = spec.resolve_source(self.plugin_paths.get(spec.name))
        self._count += 1
        try:
            with quiet_native_output():
                proc = self.engine(spec).make_plugin_processor(f"plugin_{spec.name}_{self._count}", source)
        except Exception as err:  # DawDreamer raises plain exceptions for unloadable plugins
            raise ASPError(
                f"plugin {source} of synth {spec.name!r} could not be loaded ({err}); check "
                f"the path, or point at another one with {spec.plugin_env()}"
            ) from None
        count = proc.get_plugin_parameter_size()
        if count <= spec.params[-1].index:
            raise ASPError(
                f"plugin {source} has {count} parameters but spec {spec.name!r} expects "
                f"{spec.params[-1].index + 1}; is it the right plugin?"
            )
        return proc

    def _plugin_processor(self, spec: SynthSpec):
        if self.exact or spec.name not in self._plugins:
            old = self._plugins.pop(spec.name, None)
            if old is not None:  # keep one instance per synth in the engine
                self.engine(spec).remove_processor(old.get_name())
            self._plugins[spec.name] = self._new_plugin(spec)
        return self._plugins[spec.name]

    def _render_dexed(self, spec: SynthSpec, values: np.ndarray, note: int, velocity: int, start: float,
                      held: float, length: float) -> np.ndarray:  # fmt: skip
        """One note of the DX7 engine, placed as DawDreamer places the other synths' notes: it starts
        at the first block boundary at or after ``start`` (``RenderSettings.onset_seconds``)."""
        synth = self._dexed.get(spec.name)
        if synth is None:
            synth = self._dexed[spec.name] = dx7.require_dexed().DexedSynth(spec.render.sample_rate)
        r = spec.render
        onset = -(-round(start * r.sample_rate) // r.block_size) * r.block_size
        n = int(round(length * r.sample_rate))
        synth.load_patch(dx7.to_patch(spec, values))
        with flushed_denormals():
            audio = synth.render(note, velocity, held, max(n - onset, 1) / r.sample_rate)
        out = np.zeros(n, dtype=np.float32)
        body = audio[: max(n - onset, 0)]
        out[onset : onset + len(body)] = body
        return out

    # -- rendering -----------------------------------------------------------------------
    def render(
        self,
        spec: SynthSpec | str,
        preset: np.ndarray | dict | None = None,
        *,
        note: int | None = None,
        velocity: int | None = None,
        note_start: float | None = None,
        note_duration: float | None = None,
        duration: float | None = None,
    ) -> np.ndarray:
        """Renders one note of one preset.

        Args:
            spec: the synth (a spec or a synth name).
            preset: (n_params,) normalized values, a {name: normalized value} dict, or None
                for the spec's defaults.
            note, velocity, note_start, note_duration, duration: override the spec's render
                settings (MIDI note number, 1-127 velocity, seconds).

        Returns:
            (duration * sample_rate,) float32 mono audio (the mean of the output channels).
        """
        spec = _as_spec(spec)
        values = _preset_values(spec, preset)
        r = spec.render
        note = r.note if note is None else int(note)
        velocity = r.velocity if velocity is None else int(velocity)
        start = r.note_start if note_start is None else float(note_start)
        held = r.note_duration if note_duration is None else float(note_duration)
        length = r.duration if duration is None else float(duration)
        if not 0 <= note <= 127 or not 1 <= velocity <= 127:
            raise ASPError(f"MIDI note must be 0-127 and velocity 1-127, got note {note}, velocity {velocity}")
        if start < 0 or held <= 0 or length <= 0:
            raise ASPError("note start must be >= 0 and note and render durations > 0 seconds")

        if spec.backend == "dexed":
            return self._render_dexed(spec, values, note, velocity, start, held, length)
        native = spec.to_native(values)
        engine = self.engine(spec)
        if spec.backend == "faust":
            proc, addresses = self._faust_processor(spec)
            for address, value in zip(addresses, native, strict=True):
                proc.set_parameter(address, float(value))
            midi = (note, velocity, start, held)
            if spec.num_voices == 0:  # monophonic: drive the DSP's freq, gain and gate directly
                voice, midi = self._faust_voice[spec.name], None
                proc.set_parameter(voice["freq"], 440.0 * 2.0 ** ((note - 69) / 12.0))
                proc.set_parameter(voice["gain"], velocity / 127.0)
                gate = np.zeros(int(round(length * r.sample_rate)) + r.block_size, dtype=np.float32)
                gate[int(round(start * r.sample_rate)) : int(round((start + held) * r.sample_rate))] = 1.0
                proc.set_automation(voice["gate"], gate)
            return play_note(engine, proc, length, r.sample_rate, midi)
        else:
            proc = self._plugin_processor(spec)
            with quiet_native_output():  # some plugins (Calf) print on every activation
                for p, value in zip(spec.params, native, strict=True):
                    if spec.backend == "lv2":  # DawDreamer 0.9's LV2 host drops set_parameter values
                        n = int(round(length * r.sample_rate)) + 2 * r.block_size
                        proc.set_automation(p.index, np.full(n, value, dtype=np.float32))
                    else:
                        proc.set_parameter(p.index, float(value))
                return play_note(engine, proc, length, r.sample_rate, (note, velocity, start, held))

    def render_batch(
        self,
        spec: SynthSpec | str,
        presets: np.ndarray,
        *,
        notes: np.ndarray | int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Renders many presets with this renderer's engine.

        Args:
            spec: the synth.
            presets: (batch, n_params) normalized values.
            notes: one MIDI note for all, or (batch,) notes; default the spec's note.
            progress: show a progress bar.

        Returns:
            (batch, duration * sample_rate) float32 mono audio.
        """
        spec = _as_spec(spec)
        presets = np.asarray(presets, dtype=np.float64)
        if presets.ndim != 2 or presets.shape[1] != spec.n_params:
            raise ASPError(f"presets of {spec.name!r} must have shape (batch, {spec.n_params}), got {presets.shape}")
        note_list = np.broadcast_to(np.asarray(spec.render.note if notes is None else notes), (len(presets),))
        out = np.empty((len(presets), spec.render.num_samples), dtype=np.float32)
        rows = tqdm(range(len(presets)), desc=f"render {spec.name}", unit="preset", disable=not progress)
        for i in rows:
            out[i] = self.render(spec, presets[i], note=int(note_list[i]))
        return out


_DEFAULT: Renderer | None = None


def default_renderer() -> Renderer:
    """The process-wide renderer used by ``render`` and ``render_batch``."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Renderer()
    return _DEFAULT


def play_note(engine, proc, length: float, sample_rate: int, midi: tuple | None) -> np.ndarray:
    """Plays a processor alone in ``engine`` for ``length`` seconds, with one MIDI note ``midi``
    (note, velocity, start s, held s; None: the processor's own automation plays it): the
    (length * sample_rate,) float32 mono audio, the mean of the output channels, zero-padded."""
    if midi is not None:
        proc.clear_midi()
        proc.add_midi_note(*midi)
    engine.load_graph([(proc, [])])
    with flushed_denormals():
        engine.render(length)
    n = int(round(length * sample_rate))
    mono = engine.get_audio().mean(axis=0)[:n].astype(np.float32)
    return np.pad(mono, (0, n - mono.shape[0]))


def render(spec: SynthSpec | str, preset: np.ndarray | dict | None = None, **settings) -> np.ndarray:
    """Renders one note with the process-wide renderer; see ``Renderer.render``."""
    return default_renderer().render(spec, preset, **settings)


def render_batch(spec: SynthSpec | str, presets: np.ndarray, **kwargs) -> np.ndarray:
    """Renders many presets with the process-wide renderer; see ``Renderer.render_batch``."""
    return default_renderer().render_batch(spec, presets, **kwargs)


def rms(audio: np.ndarray) -> np.ndarray:
    """Root mean square over the last axis (the paper drops renders with RMS <= 0.01)."""
    audio = np.asarray(audio, dtype=np.float64)
    return np.sqrt(np.mean(audio**2, axis=-1))
