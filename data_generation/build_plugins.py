"""Builds the built-in Faust synths as LV2 plugins, checks them, and optionally installs them.

Each synth's .dsp (the one the toolkit renders) is compiled by Debian's faust2lv2 into
<out>/<synth>.lv2 (URI urn:multi-task-asp:lv2/<synth>), read back by lilv's lv2info (when
lilv-utils is installed), and --check N random presets are rendered through the plugin in
DawDreamer and compared with the toolkit's render (LSD; a few tenths of a second per preset).
Needs: sudo apt-get install faust g++ lv2-dev libboost-dev (and lilv-utils to list them).

Examples:
    python data_generation/build_plugins.py                      # va, fm, modal -> plugins/
    python data_generation/build_plugins.py --install            # ... then copy them to ~/.lv2
    python data_generation/build_plugins.py --synths va --check 20 --out /tmp/lv2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from asp.cli import ArgumentParser, add_overwrite_flag, nonnegative_int, positive_int, run_cli
from asp.errors import ASPError
from asp.files import check_outputs
from asp.metrics import log_spectral_distance
from data_generation import lv2
from data_generation.presets import random_presets
from data_generation.spec import load_spec

BUILT_IN = ("va", "fm", "modal")
CHECK_LSD = 0.05  # a render through the plugin must be this close to the toolkit's


def _built_here(bundle: Path, spec) -> bool:
    """Whether ``bundle`` is a build of ``spec``'s plugin by this toolkit (its Turtle has an asp:specHash,
    as ``lv2.install_plugin`` checks), which a new build may replace; a user's own bundle of that name is not."""
    try:
        return lv2.read_plugin(bundle, lv2.plugin_uri(spec)).spec_hash is not None
    except ASPError:
        return False


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--synths", nargs="+", default=list(BUILT_IN), help="Faust synths to build (default: %(default)s)"
    )
    parser.add_argument("--out", default="plugins", help="folder for the <synth>.lv2 bundles (default: %(default)s)")
    parser.add_argument("--voices", type=positive_int, default=lv2.VOICES, help="polyphony (default: %(default)s)")
    parser.add_argument(
        "--check", type=nonnegative_int, default=5, metavar="N", help="random presets to compare (default 5, 0: none)"
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the --check presets")
    parser.add_argument(
        "--install",
        nargs="?",
        const="",
        metavar="DIR",
        help="copy the bundles to DIR (default: the first LV2_PATH folder, else ~/.lv2)",
    )
    add_overwrite_flag(parser)
    args = parser.parse_args()

    specs = [load_spec(name) for name in args.synths]
    not_faust = [s.name for s in specs if s.backend != "faust"]
    if not_faust:
        raise ASPError(f"only Faust synths are built as plugins; {', '.join(not_faust)} are plugins already")
    targets = [(spec, Path(args.out) / f"{lv2.class_name(spec)}.lv2") for spec in specs]
    check_outputs([t for spec, t in targets if t.exists() and not _built_here(t, spec)], overwrite=args.overwrite)
    lv2.check_tools()
    for spec in specs:
        start = time.perf_counter()
        bundle = lv2.build_plugin(spec, args.out, voices=args.voices)
        listed = lv2.validate(bundle, lv2.plugin_uri(spec))
        checked = "lv2info reads it" if listed is not None else "lv2info not installed (lilv-utils): not listed"
        print(
            f"{spec.name}: {bundle} ({lv2.plugin_uri(spec)}, spec {spec.hash}) in {time.perf_counter() - start:.0f} s"
        )
        print(f"  {checked}")
        if args.check:
            presets = random_presets(spec, args.check, np.random.default_rng(args.seed))
            toolkit, plugin = lv2.compare_renders(spec, bundle, presets)
            lsd = log_spectral_distance(toolkit, plugin)
            print(f"  {args.check} random presets through the plugin vs the toolkit: LSD max {lsd.max():.4f}")
            if lsd.max() > CHECK_LSD:
                raise ASPError(
                    f"the {spec.name} plugin does not sound like the toolkit's {spec.name} (LSD {lsd.max():.3f} > "
                    f"{CHECK_LSD}); is Debian's faust older than 2.54? Nothing was installed"
                )
    if args.install is not None:
        dest = Path(args.install) if args.install else lv2.install_dir()
        for spec in specs:
            print(f"installed {lv2.install_plugin(Path(args.out) / f'{lv2.class_name(spec)}.lv2', dest)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
