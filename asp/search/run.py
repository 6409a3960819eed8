"""A search run, phase by phase (``Search``), and the ``Searcher`` that scores presets on worker
processes and runs searches (the strategy: see ``asp.search``)."""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Iterable

import cma
import numpy as np
from tqdm import tqdm

from asp.errors import ASPError
from asp.parallel import WorkerPool
from asp.search.objective import SearchObjective, modulation_rates
from asp.search.result import SearchResult
from asp.search.space import Budget, SearchSpace
from data_generation.render import Renderer
from data_generation.spec import SynthSpec

SIGMA0 = 0.1  # CMA-ES step size in the [0, 1] coordinates (0.05-0.1 best from a network start, 0.2 worse)
DEFAULT_STARTS_KEPT = 3
# nearest training presets a search starts from besides the network's (5 renders more than 3; with 8,
# 17 held-out va sounds at 30 s each: mean LSD 1.10 -> 1.05, search distance 0.508 -> 0.499)
NEAREST_STARTS = 8
# presets drawn per synth from a model's generative heads for its best of K (docs/inference.md, "Best of K")
BEST_OF_K = 16
# run_inference.py --input's budget per refined synth (the real-sound evaluation's too): renders, so that
# a match is reproducible for a seed, with a time cap for slow plugins (whichever ends first). On the
# real-sound set's quality-against-renders curve (docs/inference.md, "How long to search") more
# renders keep paying; 200 is what keeps the command within about 10 s a sound on 2 cores.
INPUT_REFINE_RENDERS = 200
INPUT_REFINE_SECONDS = 20.0
SWEEP_EVERY = 10  # CMA-ES generations between class sweeps during a run
RATE_STEP = 0.03  # step size of a rate coordinate, relative to the others, in a run from a rate hypothesis
RATE_HYPOTHESIS_STARTS = 3  # best starts each estimated modulation rate is tried on
# s: rates are read from this long after the note starts to this long after its release (the held note)
MODULATION_WINDOW = (0.05, 0.55)


# -- workers -------------------------------------------------------------------------------------
_WORKER: dict = {}


def _warm_up() -> None:
    """Compiles librosa's filter code once per process (see ``asp.parallel``)."""
    SearchObjective(np.random.default_rng(0).normal(0, 0.1, 8192).astype(np.float32))


def _score(spec: SynthSpec, plugin_paths: tuple, note: int, key: tuple, target: np.ndarray, presets) -> list:
    """Worker task: render each preset and score it against the target ``key`` (sent once per
    worker chunk; the last one is kept)."""
    if "renderer" not in _WORKER or _WORKER["plugins"] != plugin_paths:
        _WORKER["renderer"] = Renderer(exact=False, plugin_paths=dict(plugin_paths))
        _WORKER["plugins"] = plugin_paths
    if _WORKER.get("key") != key:
        _WORKER["objective"] = SearchObjective(target, key[1])
        _WORKER["key"] = key
    renderer, objective = _WORKER["renderer"], _WORKER["objective"]
    return [objective(renderer.render(spec, preset, note=note)) for preset in presets]


class Searcher:
    """Scores presets against targets on worker processes and runs searches.

    Args:
        workers: render processes (1: in this process).
        plugin_paths: {synth: plugin path} overriding specs' sources.
    """

    def __init__(self, *, workers: int = 1, plugin_paths: dict[str, str] | None = None):
        if workers < 1:
            raise ASPError(f"search workers must be at least 1, got {workers}")
        self.workers = workers
        self.plugin_paths = tuple(sorted((plugin_paths or {}).items()))
        self.pool = WorkerPool(workers, initializer=_warm_up)
        self._exact: Renderer | None = None  # the final, exact re-renders (made on first use)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def score(self, spec: SynthSpec, target: np.ndarray, note: int, presets: np.ndarray) -> np.ndarray:
        """Renders presets (batch, n_params) at ``note`` and scores them: (batch,) distances."""
        target = np.asarray(target, dtype=np.float32)
        key = (zlib.crc32(target.tobytes()), spec.render.sample_rate)
        chunks = np.array_split(np.asarray(presets, dtype=np.float64), min(self.workers, len(presets)))
        tasks = [(spec, self.plugin_paths, int(note), key, target, chunk) for chunk in chunks]
        return np.concatenate([np.asarray(s, dtype=np.float64) for s in self.pool.map(_score, tasks)])

    def exact_distances(self, spec: SynthSpec, target: np.ndarray, note: int, presets: np.ndarray) -> np.ndarray:
        """Renders presets exactly (a fresh plugin instance, Faust compiled scalar, as every output
        is rendered) in this process and scores them: (batch,) distances."""
        if self._exact is None:
            self._exact = Renderer(plugin_paths=dict(self.plugin_paths))
        objective = SearchObjective(target, spec.render.sample_rate)
        return np.array([objective(self._exact.render(spec, p, note=note)) for p in presets])

    def search(
        self,
        spec: SynthSpec,
        target: np.ndarray,
        note: int,
        starts: dict[str, np.ndarray],
        budget: Budget,
        *,
        seed: int = 0,
        hold: Iterable[str] = (),
        keep: int = DEFAULT_STARTS_KEPT,
        snapshot_at: Iterable[int] = (),
        progress: bool = True,
    ) -> SearchResult:
        """Finds the preset of ``spec`` whose render at ``note`` is closest to ``target``.

        Scores every start, sweeps the classes of the best one, then runs CMA-ES from it; every
        ``SWEEP_EVERY`` generations a class sweep of the best point may restart the run from a
        better one. When a run converges, it restarts from the next of the ``keep`` best starts,
        then from the best point found with a doubled population (IPOP), until the budget is spent.

        Args:
            spec: the synth.
            target: (n,) mono audio at the spec's sample rate and length.
            note: MIDI note to render at.
            starts: {label: encoded vector (one-hot or class probabilities)}, at least one.
            budget: renders and/or seconds for this search, starts included.
            seed: seeds CMA-ES (a render budget then gives the same result every time).
            hold: parameter names kept at each start's value.
            keep: how many of the best starts CMA-ES runs from.
            snapshot_at: render counts at which to keep the best preset (quality-vs-budget curves).
            progress: a progress bar with the best distance so far.

        Returns:
            The ``SearchResult``.
        """
        run = Search(self, spec, target, note, starts, budget, hold=hold, snapshot_at=snapshot_at, progress=progress)
        return run.run(seed=seed, keep=keep)


class Search:
    """One search: the state its phases share (the best preset so far, the renders spent, the
    history and snapshots) and the phases themselves, in the order ``run`` calls them.

    Args: as ``Searcher.search``; ``searcher`` scores the candidates.
    """

    def __init__(
        self,
        searcher: Searcher,
        spec: SynthSpec,
        target: np.ndarray,
        note: int,
        starts: dict[str, np.ndarray],
        budget: Budget,
        *,
        hold: Iterable[str] = (),
        snapshot_at: Iterable[int] = (),
        progress: bool = True,
    ):
        if not starts:
            raise ASPError("a search needs at least one start")
        self.begin = time.perf_counter()
        self.searcher, self.spec, self.target, self.note, self.budget = searcher, spec, target, note, budget
        self.space = SearchSpace(spec, hold)
        self.labels = list(starts)
        self.embedded = np.stack([self.space.embed(starts[k]) for k in self.labels])
        self.start_presets = self.space.codec.decode(self.embedded)
        if budget.renders is not None and budget.renders < len(self.labels):
            raise ASPError(
                f"a search budget of {budget.renders} renders cannot score its {len(self.labels)} starts; give it at "
                f"least {len(self.labels)} renders, or fewer starts (--refine-starts)"
            )
        self.bar = tqdm(
            total=budget.renders, desc=f"search {spec.name}", unit="render", disable=not progress, leave=False
        )
        self.renders = 0
        self.best: dict = {}  # {"distance", "preset"}: replaced (never changed) when a candidate beats it
        self.history: list[tuple[int, float]] = []
        self.marks = sorted(set(int(m) for m in snapshot_at))
        self.snapshots: dict[int, np.ndarray] = {}
        self.runs: list[dict] = []

    # -- bookkeeping -------------------------------------------------------------------
    def spent(self) -> bool:
        """Whether the budget's seconds are up (a render budget is checked where renders are spent)."""
        return self.budget.seconds is not None and time.perf_counter() - self.begin >= self.budget.seconds

    def left(self) -> float:
        """Renders left in the budget (infinite without a render budget)."""
        return math.inf if self.budget.renders is None else self.budget.renders - self.renders

    def snapshot(self) -> None:
        while self.marks and self.marks[0] <= self.renders:
            self.snapshots[self.marks.pop(0)] = np.asarray(self.best["preset"], dtype=np.float64)

    def improve(self, presets: np.ndarray) -> np.ndarray:
        """Scores presets (one batch), keeps the best if it beats the best so far; their distances."""
        scores = self.searcher.score(self.spec, self.target, self.note, presets)
        self.renders += len(presets)
        self.bar.update(len(presets))
        i = int(np.argmin(scores))
        if scores[i] < self.best["distance"]:
            self.best = {"distance": float(scores[i]), "preset": presets[i]}
            self.bar.set_postfix(best=f"{self.best['distance']:.3f}")
        self.history.append((self.renders, self.best["distance"]))
        self.snapshot()
        return scores

    # -- the phases --------------------------------------------------------------------
    def score_starts(self) -> None:
        """Scores every start (one batch): the best start is the first best point."""
        self.distances = self.searcher.score(self.spec, self.target, self.note, self.start_presets)
        self.renders = len(self.labels)
        self.bar.update(self.renders)
        self.order = np.argsort(self.distances, kind="stable")
        self.best_i = int(self.order[0])
        self.best = {"distance": float(self.distances[self.best_i]), "preset": self.start_presets[self.best_i]}
        self.history = [(self.renders, self.best["distance"])]
        self.snapshot()
        self.bar.set_postfix(best=f"{self.best['distance']:.3f}")

    def sweep_classes(self) -> bool:
        """Tries every other class of every categorical parameter of the best preset (one batch),
        then all the changes that helped together. Returns whether it ran."""
        before = self.best
        candidates, changes = self.space.class_changes(before["preset"])
        if not len(candidates) or self.spent() or self.left() < len(candidates) + 1:
            return False
        scores = self.improve(candidates)
        helped: dict[int, tuple[float, float]] = {}
        for (index, value), score in zip(changes, scores):
            if score < before["distance"] and score < helped.get(index, (math.inf, 0.0))[0]:
                helped[index] = (score, value)
        if len(helped) > 1:
            combined = before["preset"].copy()
            for index, (_, value) in helped.items():
                combined[index] = value
            self.improve(combined[None])
        return True

    def rate_hypothesis(self) -> tuple | None:
        """The first CMA-ES run when the synth has rate parameters (spec ``rate_hz``): each of the
        target's ``modulation_rates`` set on each of the best starts, scored in one batch; the run
        starts from the best of them, with the rate's step size ``RATE_STEP`` times the others'.
        None when there is nothing to try or no budget for it."""
        space = self.space
        if not space.rates or self.spent():
            return None
        r = self.spec.render
        after_start, after_release = MODULATION_WINDOW
        heard = modulation_rates(
            self.target, r.sample_rate, r.note_start + after_start, r.note_start + r.note_duration + after_release
        )
        candidates, moves = space.rate_changes(self.start_presets[self.order[:RATE_HYPOTHESIS_STARTS]], heard)
        if not len(candidates) or self.left() < len(candidates) + 4:
            return None
        j = int(np.argmin(self.improve(candidates)))
        coordinate, name, hz = moves[j]
        stds = np.ones(len(space.free))
        stds[coordinate] = RATE_STEP
        return f"{name} at {hz:.2f} Hz", space.embed(space.codec.encode(candidates[j])), SIGMA0, stds

    def first_sweeps(self) -> bool:
        """Sweeps the best start's classes; a synth with categorical parameters alone is swept
        until a sweep finds nothing. Returns whether the sweeps moved the best point."""
        initial = self.best
        self.sweep_classes()
        if len(self.space.free) == 0:
            while self.best is not initial:
                initial = self.best
                if not self.sweep_classes():
                    break
        return self.best is not initial

    def planned_runs(self, keep: int, swept: bool) -> list[tuple]:
        """The CMA-ES runs to make first: (label, base vector or None for the best point so far,
        step size, per-coordinate step sizes relative to it or None): from a rate hypothesis,
        from the best start (its classes swept), then from the next ``keep`` - 1 starts."""
        first = self.labels[self.best_i]
        queue = [(f"{first}, classes swept" if swept else first, None, SIGMA0, None)]
        queue += [(self.labels[i], self.embedded[i], SIGMA0, None) for i in self.order[1:keep]]
        hypothesis = self.rate_hypothesis()
        if hypothesis is not None:
            queue.insert(0, hypothesis)
        return queue

    def cma_options(self, size: int, rng: np.random.Generator, stds) -> dict:
        options = {
            "bounds": [0.0, 1.0],
            "popsize": size,
            "seed": np.nan,  # we sample with our own generator
            "randn": lambda *shape: rng.standard_normal(shape),
            "verbose": -9,
            "verb_log": 0,
            "verb_disp": 0,
            "tolfun": 1e-4,
            "tolx": 1e-4,
            "CMA_diagonal": True,  # separable CMA-ES: learns scales in fewer renders than a full covariance
        }
        if len(self.space.free) == 1:  # cma's step-size cap fails in one dimension (ValueError in tell)
            options["maxstd"] = math.inf
        if stds is not None:
            options["CMA_stds"] = list(stds)
        return options

    def cma_run(self, label: str, base: np.ndarray, sigma: float, stds, size: int, rng) -> tuple:
        """One CMA-ES run from ``base`` with population ``size``, class sweeps every
        ``SWEEP_EVERY`` generations; recorded in ``runs``. Returns (the strategy, generations,
        whether the budget ran out, whether a sweep moved the best point)."""
        space = self.space
        es = cma.CMAEvolutionStrategy(base[space.free], sigma, self.cma_options(size, rng, stds))
        generations = 0
        exhausted = switched = False
        while not es.stop() and not self.spent():
            if self.left() < size:
                exhausted = True  # the rest of the budget cannot pay for a generation
                break
            generations += 1
            candidates = np.asarray(es.ask())
            scores = self.improve(space.presets(base, candidates))
            es.tell(list(candidates), [s if math.isfinite(s) else 1e9 for s in scores])
            if space.class_params and generations % SWEEP_EVERY == 0:
                before = self.best
                self.sweep_classes()
                switched = self.best is not before
                if switched:  # other classes helped: go on from there
                    break
        stop = ["classes changed"] if switched else sorted(es.stop())
        self.runs.append({"start": label, "popsize": size, "generations": generations, "stop": stop})
        return es, generations, exhausted, switched

    def cma_runs(self, queue: list[tuple], rng: np.random.Generator) -> None:
        """CMA-ES runs until the budget is spent: the planned ones, then restarts from the best
        point with a doubled population (IPOP); a run whose sweep moved the best point goes on from
        there at the step size it had reached."""
        space = self.space
        popsize = space.popsize
        while len(space.free) and not self.spent():
            if queue:
                label, base, sigma, stds = queue.pop(0)
                if base is None:  # the best point so far (the best start, its classes swept)
                    base = space.embed(space.codec.encode(self.best["preset"]))
            else:  # every start has been run: restart from the best point with a larger population
                label, base, sigma, stds = (
                    "best so far",
                    space.embed(space.codec.encode(self.best["preset"])),
                    SIGMA0,
                    None,
                )
                popsize *= 2
            size = int(min(popsize, self.left()))
            if size < 4:  # too few renders left for a generation
                break
            es, generations, exhausted, switched = self.cma_run(label, base, sigma, stds, size, rng)
            if generations == 0 or exhausted:
                break
            if switched:  # from the new best point, at the step size this run had reached
                step = float(np.median(es.stds))  # a rate hypothesis's run keeps its rate's small step
                queue.insert(0, ("classes changed", None, step, None if stds is None else np.asarray(es.stds) / step))
                continue
            self.sweep_classes()  # a converged run: its best point's classes, before the next run

    def result(self) -> SearchResult:
        """The candidates rendered fast: the winner and the best start are rendered exactly, and
        the better one is the result."""
        pair = np.stack([self.best["preset"], self.start_presets[self.best_i]])
        same = np.array_equal(pair[0], pair[1])  # nothing beat the best start: one render is enough
        exact = self.searcher.exact_distances(self.spec, self.target, self.note, pair[:1] if same else pair)
        found, start_distance = exact[0], exact[-1]
        preset = pair[0] if found < start_distance else pair[1]
        return SearchResult(
            preset=np.asarray(preset, dtype=np.float64),
            distance=float(min(found, start_distance)),
            start=self.labels[self.best_i],
            start_distance=float(start_distance),
            start_preset=self.start_presets[self.best_i],
            starts={k: float(d) for k, d in zip(self.labels, self.distances)},
            renders=self.renders,
            seconds=time.perf_counter() - self.begin,
            history=self.history,
            snapshots=self.snapshots,
            runs=self.runs,
        )

    def run(self, *, seed: int = 0, keep: int = DEFAULT_STARTS_KEPT) -> SearchResult:
        """Every phase in order: the starts, the first class sweeps, the CMA-ES runs, the exact result."""
        self.score_starts()
        rng = np.random.default_rng(seed)
        swept = self.first_sweeps()
        self.cma_runs(self.planned_runs(keep, swept), rng)
        self.bar.close()
        return self.result()
