"""Lists a synth's parameters, or generates a spec from any plugin's own parameter list.

Examples:
    python data_generation/view_parameters.py --list
    python data_generation/view_parameters.py --synth amsynth
    python data_generation/view_parameters.py --plugin /usr/lib/vst/amsynth_vst.so
    python data_generation/view_parameters.py --plugin http://calf.sourceforge.net/plugins/Monosynth \\
        --name calf_monosynth --write-spec my_synths/calf_monosynth.json
    python data_generation/view_parameters.py --synth va --write-spec   # regenerate from the .dsp
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asp.cli import ArgumentParser, add_overwrite_flag, run_cli
from asp.errors import ASPError
from asp.files import check_outputs, mark_written
from data_generation.dx7 import describe_dexed
from data_generation.spec import SYNTH_DIR, SynthSpec, available_synths, load_spec
from data_generation.spec_gen import build_spec, describe_faust, describe_plugin, snake


def format_table(spec: SynthSpec) -> str:
    """The parameter table of a spec, as printed by this script."""
    lines = [
        f"{spec.name}: {spec.description}",
        f"backend {spec.backend}, source {spec.source or '(set ' + spec.plugin_env() + ')'}",
        f"{spec.n_params} parameters ({sum(p.categorical for p in spec.params)} categorical, "
        f"{sum(p.fixed for p in spec.params)} fixed), encoded size {spec.encoded_size}",
        "",
        f"{'index':>5}  {'name':<28} {'classes':>7}  {'group':<5}  {'default':>7}  {'sampled':<13} units",
    ]
    for p in spec.params:
        classes = str(p.classes) + (" fixed" if p.fixed else "")
        units = "" if p.units is None else f"{p.units[0]:g}..{p.units[1]:g}"
        if p.choices:
            units = (units + " " if units else "") + "/".join(p.choices[:6]) + ("/..." if len(p.choices) > 6 else "")
        sampled = f"{p.sample_range[0]:.2f}..{p.sample_range[1]:.2f}"
        lines.append(f"{p.index:>5}  {p.name:<28} {classes:>7}  {p.group:<5}  {p.default:>7.3f}  {sampled:<13} {units}")
    return "\n".join(lines)


def _backend_of(source: str) -> str:
    if source in ("dexed", "dexed-py"):  # the DX7 engine (pip package dexed-py)
        return "dexed"
    if "://" in source or source.startswith("urn:"):
        return "lv2"
    if source.endswith(".dsp"):
        return "faust"
    if source.endswith(".vst3"):
        return "vst3"
    if source.endswith(".lv2") or source.endswith(".lv2/"):
        return "lv2"
    return "vst"


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--synth", help="a synth name (see --list) or the path of a spec .json")
    what.add_argument(
        "--plugin", help="a VST2 .so, VST3 .vst3, LV2 URI or Faust .dsp to describe ('dexed': the DX7 engine)"
    )
    what.add_argument("--list", action="store_true", help="list the synths that have a spec")
    parser.add_argument("--name", help="synth name for a spec generated with --plugin (default: from the file)")
    parser.add_argument(
        "--write-spec",
        nargs="?",
        const="",
        metavar="PATH",
        help="write a spec generated from the synth's own parameter list "
        "(default path: the existing spec, or ./<name>.json)",
    )
    add_overwrite_flag(parser)
    args = parser.parse_args()
    if args.write_spec and Path(args.write_spec).is_dir():
        raise ASPError(f"--write-spec {args.write_spec} is a folder; give a file path such as my_synth.json")

    if args.list:
        for name in available_synths():
            spec = load_spec(name)
            print(
                f"{name:<16} {spec.backend:<6} {spec.n_params:>4} params  encoded {spec.encoded_size:>4}  "
                f"{spec.description}"
            )
        return 0

    if args.synth and args.write_spec is None:
        print(format_table(load_spec(args.synth)))
        return 0

    previous = None
    if args.synth:
        previous = load_spec(args.synth)
        name, backend = previous.name, previous.backend
        source = previous.resolve_source()
        stored_source = previous.source
    else:
        source = args.plugin
        backend = _backend_of(source)
        name = args.name or ("dx7" if backend == "dexed" else snake(Path(source.rstrip("/")).stem.split("/")[-1]))
        stored_source = "dexed-py" if backend == "dexed" else source
        if backend == "faust" and not Path(source).is_file():
            raise ASPError(f"faust source {source} not found")
    if backend == "dexed":
        described = describe_dexed()
    else:
        described = describe_faust(source) if backend == "faust" else describe_plugin(source)
    spec = build_spec(name=name, backend=backend, source=stored_source, described=described, previous=previous)

    if args.write_spec is None:
        print(format_table(spec))
        print("\n(add --write-spec to save this spec; then check classes, groups and sample ranges)")
        return 0
    if args.write_spec:
        out = Path(args.write_spec)
    elif previous is not None and previous.path is not None:
        out = previous.path
    else:
        out = Path(f"{name}.json")
    if out.parent != Path("") and not out.parent.is_dir():
        raise ASPError(f"folder {out.parent} does not exist; create it or choose another --write-spec path")
    regenerating = previous is not None and previous.path is not None and out.resolve() == previous.path.resolve()
    check_outputs([out], overwrite=args.overwrite or regenerating)  # a user's my.json: refused
    spec.write(out)
    if not regenerating:  # the synth's own spec is the user's to regenerate; a new file is ours
        mark_written(out)
    print(f"wrote {out}: {spec.n_params} parameters, encoded size {spec.encoded_size}")
    if out.parent.resolve() != SYNTH_DIR:
        print(f"use it with its path, or put its folder in ASP_SYNTH_PATH to use it by name {name!r}")
    return 0


if __name__ == "__main__":
    run_cli(main)
