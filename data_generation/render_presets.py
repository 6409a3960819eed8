"""Renders a synth's presets to wav files: factory/human presets, a preset file, or random ones.

Examples:
    python data_generation/render_presets.py --synth va --out renders/va
    python data_generation/render_presets.py --synth amsynth --limit 10 --note 48
    python data_generation/render_presets.py --synth va --preset-file my_preset.json
    python data_generation/render_presets.py --synth amsynth --preset-file my_presets.bank
    python data_generation/render_presets.py --synth fm --random 5 --seed 1
    python data_generation/render_presets.py --synth dx7 --name "E.PIANO 1" --name "BRASS 1"
    python data_generation/render_presets.py --synth dx7 --holdout --limit 8
    python data_generation/render_presets.py --synth dx7 --preset-file my_cartridge.syx
    python data_generation/render_presets.py --synth serum --plugin serum=/path/to/Serum.so --random 3
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

import asp
from asp.cli import ArgumentParser, add_overwrite_flag, nonnegative_int, parse_plugin_paths, positive_int, run_cli
from asp.errors import ASPError
from asp.files import atomic_path, check_outputs, mark_written, write_sound
from data_generation.presets import human_presets, random_presets, read_preset_file
from data_generation.render import rms
from data_generation.spec import load_spec


def safe_name(text: str) -> str:
    """A preset name as a file name."""
    return re.sub(r"[^0-9A-Za-z._-]+", "_", text).strip("_") or "preset"


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synth", required=True, help="synth name or spec path")
    parser.add_argument(
        "--preset-file",
        help="a preset file to render: .faust.json, <synth>.preset.json, .params.json (as run_inference.py "
        "writes them), an amsynth .bank, an LV2 preset bundle (.lv2 folder) or a DX7 .syx (default: the synth's "
        "human presets)",
    )
    parser.add_argument(
        "--name",
        action="append",
        metavar="NAME",
        help="render only the presets of this name (case and spaces ignored; repeat for several)",
    )
    parser.add_argument(
        "--holdout", action="store_true", help="the human presets the spec holds out of training (dx7: the TX7 ROM)"
    )
    parser.add_argument(
        "--random", type=positive_int, default=None, metavar="N", help="render N random presets instead"
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed for --random")
    parser.add_argument("--limit", type=nonnegative_int, default=0, help="render at most this many presets (0: all)")
    parser.add_argument("--note", type=int, default=None, help="MIDI note (default: the spec's, 60)")
    parser.add_argument("--out", default=None, help="output folder (default: renders/<synth>)")
    parser.add_argument("--plugin", action="append", metavar="NAME=PATH", help="plugin path of a synth")
    add_overwrite_flag(parser)
    args = parser.parse_args()

    if args.note is not None and not 0 <= args.note <= 127:
        raise ASPError(f"--note must be a MIDI note 0-127, got {args.note}")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ASPError(f"--out {args.out} is a file, not a folder; choose another --out")
    spec = load_spec(args.synth)
    if args.random is not None:
        presets = random_presets(spec, args.random, np.random.default_rng(args.seed))
        names = [f"random_{i:03d}" for i in range(args.random)]
    elif args.preset_file:
        names, presets = read_preset_file(spec, args.preset_file)
    else:
        names, presets = human_presets(spec, holdout=args.holdout)
        if not names:
            held = " held-out" if args.holdout else ""
            raise ASPError(f"synth {spec.name!r} ships no{held} presets; use --random N or --preset-file")
    if args.name:
        key = lambda text: "".join(text.split()).lower()  # noqa: E731
        wanted = {key(n) for n in args.name}
        take = [i for i, n in enumerate(names) if key(n) in wanted]
        found = {key(names[i]) for i in take}
        missing = [n for n in args.name if key(n) not in found]
        if missing:
            raise ASPError(
                f"no preset named {', '.join(repr(m) for m in missing)} among the {len(names)} presets; "
                f"some are {', '.join(repr(n) for n in names[:5])}"
            )
        names, presets = [names[i] for i in take], presets[take]
    if args.limit:
        names, presets = names[: args.limit], presets[: args.limit]
    plugin_paths = parse_plugin_paths(args.plugin)
    asp.render(spec, presets[0], note=args.note, plugin_paths=plugin_paths)  # fail early (missing plugin) first
    out = Path(args.out or f"renders/{spec.name}")
    paths = [out / f"{i:03d}_{safe_name(name)}.wav" for i, name in enumerate(names)]
    check_outputs(paths, overwrite=args.overwrite)  # a user's own 000_random_000.wav: refused before any work
    out.mkdir(parents=True, exist_ok=True)  # a path that is a file, or unwritable: one line (run_cli)
    rows = []
    for path, preset in tqdm(list(zip(paths, presets)), desc=f"render {spec.name}", unit="preset"):
        audio = asp.render(spec, preset, note=args.note, plugin_paths=plugin_paths)
        with atomic_path(path) as tmp:  # a killed run leaves whole files only
            write_sound(tmp, audio, spec.render.sample_rate, format="WAV", subtype="FLOAT", shown=path)
        mark_written(path)
        rows.append((path.name, float(rms(audio)), float(np.abs(audio).max())))
    for file, level, peak in rows:
        print(f"{file:<40} rms {level:.3f}  peak {peak:.3f}" + ("  (silent)" if level <= 0.01 else ""))
    print(f"wrote {len(rows)} wav files to {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
