"""Benchmark of dataset generation: samples/s with 1 and 2 workers, with and without HPSS, and
where the time goes (render / mel / HPSS / write). Run by hand; prints figures, asserts nothing.

    .venv/bin/python -m bench generation                 # Faust synths and amsynth
    .venv/bin/python -m bench generation --n 100 --skip-amsynth
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from asp.builder import Settings, generate
from bench import common

FAUST = ("va", "fm", "modal")


def run(synths, n, workers, hpss):
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            synths=synths, presets={s: ("random",) for s in synths}, n=n, notes=(60,), seed=0, hpss=hpss
        )
        summary = generate(settings, Path(tmp) / "data", workers=workers, progress=False)
    return summary


def report(label, summary, workers):
    cost = summary.times
    per = {k: 1000 * v / max(summary.rendered, 1) for k, v in cost.items()}
    steady = summary.rendered / summary.loop_seconds
    total = summary.rendered / summary.seconds
    print(
        f"{label:<34} {workers} worker(s): {steady:6.1f} samples/s rendering, {total:6.1f} end to end  | "
        f"per sample (worker CPU ms): render {per['render']:.1f}, mel {per['mel']:.1f}, "
        f"hpss {per['hpss']:.1f}, write {per['write']:.1f}"
    )
    return steady


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--n", type=int, default=400, help="presets per Faust synth")
    parser.add_argument("--n-amsynth", type=int, default=60)
    parser.add_argument("--skip-amsynth", action="store_true")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")
    run(("va",), 2, 1, True)  # warm caches (numba, librosa) outside the measurements
    cases = [("faust, no hpss", FAUST, args.n, False), ("faust, hpss", FAUST, max(args.n // 3, 10), True)]
    if not args.skip_amsynth and Path("/usr/lib/vst/amsynth_vst.so").exists():
        cases += [
            ("amsynth, no hpss", ("amsynth",), args.n_amsynth, False),
            ("amsynth, hpss", ("amsynth",), args.n_amsynth, True),
        ]
    for label, synths, n, hpss in cases:
        one = report(label, run(synths, n, 1, hpss), 1)
        two = report(label, run(synths, n, 2, hpss), 2)
        print(f"{'':<34} speed-up with 2 workers: {two / one:.2f}x")


if __name__ == "__main__":
    main()
