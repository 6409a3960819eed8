"""Training on many devices with ``tf.distribute`` (``--distribute``): ``MirroredStrategy`` over
one machine's GPUs (or the devices ``--devices`` names), ``MultiWorkerMirroredStrategy`` across
processes or machines set up from the ``TF_CONFIG`` environment variable.

What a distributed run does differently, and nothing else:

- **Batches.** ``--batch-size`` is the batch of one replica; a step trains on the global batch
  (``--batch-size`` x replicas). Every worker walks the same seeded order of the training rows and
  reads only its replicas' parts of each global batch, so the run sees the global batches a
  single-device run with ``--batch-size`` = the global batch sees (epoch ``e`` in the order of
  ``make_stream``'s epoch ``e``); replicas' gradients are averaged (``SynthVAE.train_step`` divides
  each replica's loss by the replica count: Keras sums them). Every replica of a step gets as many
  rows (Keras' first look at a batch needs that), so a last global batch is cut to a multiple of
  the replicas: at most replicas - 1 rows per epoch are left out, different ones each epoch as
  the order reshuffles (the same last ones of the validation split).
- **Learning rate.** ``--lr`` is used as given, whatever the global batch (not scaled with the
  replicas: Adam's steps do not grow with the batch the way SGD's do; to scale it, pass a larger
  ``--lr``). config.json records ``distribute``, ``replicas``, ``workers``, ``global_batch_size``,
  ``lr_used`` and ``samples_per_epoch``; a run resumes only with the same number of replicas.
- **The run folder.** The chief (worker 0) holds the folder's lock and writes everything, as a
  single run does. Every other worker works in a private temp folder holding a copy of the run's
  checkpoints (TensorFlow's rule: workers write elsewhere than the chief), deleted at the end. To
  resume, every worker must see the run folder (a shared folder: NFS or a mounted bucket); before
  training, the workers compare their settings, data fingerprint and resume point and refuse to
  start when they differ.

CPU workers (the tests, a cluster of CPU machines) need no special setting: the collectives run
over gRPC with TensorFlow's RING implementation, which ``CommunicationOptions`` picks by itself
when there is no GPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asp.backend import keras_backend, tensorflow
from asp.checkpoints import CONFIG, WEIGHTS
from asp.config import TrainConfig
from asp.errors import ASPError
from asp.files import parse_json
from asp.locks import folder_lock
from asp.training.checkpoints import BACKUP
from asp.training.stream import make_stream, replica_batches, stream_arrays
from asp.waits import wait_for_peers
from data.dataset import Split

TF_CONFIG = "TF_CONFIG"
TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\''
)
DOCS = "docs/training.md#training-on-many-devices"

_STRATEGY: dict = {}  # one strategy per process: TensorFlow sets up a multi-worker cluster once


@dataclass
class Cluster:
    """Where a run trains: the strategy, its replicas and workers, and which worker this is.

    ``kind`` none is today's single-device run: ``strategy`` None, the streams of ``make_stream``.
    """

    kind: str
    strategy: object | None
    replicas: int = 1
    workers: int = 1
    worker: int = 0  # this worker's index; 0 is the chief
    chief: bool = True
    clock: dict = field(default_factory=lambda: {"epoch": 0})  # the epoch Keras is in (``callbacks``)

    @property
    def local_replicas(self) -> int:
        return self.replicas // self.workers

    def describe(self, devices: str) -> str:
        """Where the run trains, in words."""
        if self.strategy is None:
            return devices
        where = (
            f"{self.workers} workers x {self.local_replicas} replica{'s' * (self.local_replicas > 1)}"
            if self.kind == "multi-worker"
            else f"{self.replicas} replicas"
        )
        who = f", this is worker {self.worker}{' (chief)' * self.chief}" if self.kind == "multi-worker" else ""
        return f"{devices}, {where} ({type(self.strategy).__name__}{who})"

    # -- what config.json records -------------------------------------------------------
    def record(self, cfg: TrainConfig, train_samples: int) -> dict:
        """The keys a run's config.json gets from its distribution: replicas, workers, the global
        batch, the learning rate used, the samples and steps of an epoch (and the KL warm-up in
        steps, which follows them)."""
        batch = cfg.batch_size * self.replicas
        steps, seen = epoch_steps(train_samples, batch, self.replicas)
        return {
            "distribute": self.kind,
            "replicas": self.replicas,
            "workers": self.workers,
            "global_batch_size": batch,
            "lr_used": cfg.lr,  # kept, not scaled with the replicas
            "samples_per_epoch": seen,
            "steps_per_epoch": steps,
            "kl_warmup_steps": cfg.kl_warmup_epochs * steps,
        }

    # -- the model ----------------------------------------------------------------------
    def scope(self):
        """The strategy's scope (variables made in it are mirrored on every replica); TensorFlow's
        default strategy's for a single-device run; none under another backend."""
        tf = tensorflow()
        if tf is None:
            return contextlib.nullcontext()
        return (self.strategy or tf.distribute.get_strategy()).scope()

    # -- the data -----------------------------------------------------------------------
    def make_stream(
        self, split: Split, indices: np.ndarray, keys: list[str], *, batch_size: int, shuffle: bool, seed: int
    ):
        """``asp.training.stream.make_stream`` for this run: its own for a single device; for a
        distributed run, the same global batches (``batch_size`` x replicas), each replica fed its
        part by ``distribute_datasets_from_function``."""
        if self.strategy is None:
            clock = self.clock
            return make_stream(
                split, indices, keys, batch_size=batch_size, shuffle=shuffle, seed=seed, epoch=lambda: clock["epoch"]
            )
        tf = tensorflow()
        local = self.local_replicas
        steps, _ = epoch_steps(len(indices), batch_size * self.replicas, self.replicas)

        def per_worker(context):
            first = context.input_pipeline_id * local  # this worker's replicas are first .. first + local - 1
            batches = replica_batches(
                split,
                indices,
                keys,
                batch_size=batch_size * self.replicas,
                replicas=self.replicas,
                mine=range(first, first + local),
                shuffle=shuffle,
                seed=seed,
                epoch=lambda: self.clock["epoch"],
            )
            signature = {k: tf.TensorSpec((None, *shape), tf.float32) for k, shape in _shapes(split, keys).items()}
            stream = tf.data.Dataset.from_generator(batches, output_signature=signature)
            stream = stream.apply(tf.data.experimental.assert_cardinality(steps * local))
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF  # ours
            return stream.with_options(options).prefetch(2 * local)

        stream = self.strategy.distribute_datasets_from_function(per_worker)
        # TensorFlow reports the elements of a worker's dataset (steps x its replicas) as the
        # distributed dataset's length, and Keras would run that many steps; a step takes one
        # element per replica
        if local > 1 and getattr(stream, "_cardinality", None) == steps * local:
            stream._cardinality = steps
        return stream

    def callbacks(self) -> list:
        """The run's callbacks for its distribution: the epoch clock of the run's streams (Keras
        takes a first batch of a distributed run's streams before training, to build the model, and
        a resumed run starts at a later epoch, so the streams cannot count their epochs
        themselves)."""
        import keras

        clock = self.clock

        class EpochClock(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                clock["epoch"] = epoch

        return [EpochClock()]

    # -- the run folder -----------------------------------------------------------------
    @contextlib.contextmanager
    def run_folder(self, run_dir: Path) -> Iterator[Path]:
        """The folder this worker writes the run to, held for the block: the run folder under its
        lock on the chief (and in a single run); on any other worker a private temp folder holding
        a copy of the run folder's checkpoints, removed afterwards."""
        if self.chief:
            run_dir.mkdir(parents=True, exist_ok=True)
            with folder_lock(run_dir, what="another training run", fix="choose another --model-dir"):
                yield run_dir
            return
        _remove_stale_scratch()
        scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH}{self.worker}-{os.getpid()}-"))
        try:
            _copy_checkpoints(run_dir, scratch)
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def agree(self, config: dict, **values: float) -> None:
        """Refuses to train when the workers differ: in their run's settings and data
        (``config``'s settings and fingerprint) or in ``values`` (the epochs done, the epoch a run
        resumes from). A no-op on one worker.

        Raises:
            ASPError: naming what differs, the chief's value and this worker's.
        """
        if self.workers == 1:
            return
        tf = tensorflow()
        names = ["settings", *values]
        mine = np.array([settings_digest(config), *values.values()], np.float64)

        @tf.function  # (eagerly, the strategy warns of its overhead)
        def gather():
            return self.strategy.gather(self.strategy.run(lambda: tf.constant(mine[None, :])), axis=0)

        seen = gather().numpy()  # (replicas, values), workers in order
        chief = seen[0]
        for i, name in enumerate(names):
            if not np.all(seen[:, i] == chief[i]):
                if name == "settings":
                    raise ASPError(
                        "the workers train different runs (their settings or datasets differ); start every "
                        "worker with the same command and the same dataset (the same data fingerprint)"
                    )
                raise ASPError(
                    f"the workers disagree on {name.replace('_', ' ')}: the chief has {chief[i]:g}, the workers "
                    f"{', '.join(f'{v:g}' for v in seen[:, i])}; every worker must see the run folder (a shared "
                    f"folder: NFS or a mounted bucket) to resume, or pass --fresh to every worker"
                )

    @contextlib.contextmanager
    def lost_workers(self) -> Iterator[None]:
        """Turns a collective that failed because a worker went away into one line."""
        tf = tensorflow()
        if self.workers == 1 or tf is None:
            yield
            return
        try:
            yield
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError) as e:
            text = re.sub(r"\{\{[^}]*\}\}\s*", "", str(e)).strip()  # TensorFlow's {{function_node ...}} prefix
            first = text.splitlines()[0][:200] if text else type(e).__name__
            raise ASPError(
                f"a worker of the cluster stopped or cannot be reached ({first}); start every worker again with "
                "the same command: the run resumes from its last saved epoch"
            ) from None


def epoch_steps(samples: int, global_batch: int, replicas: int) -> tuple[int, int]:
    """(steps, samples seen) of one epoch over ``samples`` rows in global batches, the last one
    cut to a multiple of the replicas (every replica of a step gets as many rows)."""
    full, rest = divmod(samples, global_batch)
    last = rest - rest % replicas
    return full + (last > 0), full * global_batch + last


def _shapes(split: Split, keys: list[str]) -> dict[str, tuple]:
    return {k: tuple(v.shape[1:]) for k, v in stream_arrays(split, keys).items()}


# settings that may differ between the workers of one run: where each keeps its files
_PER_WORKER = ("data_dir", "epochs_done", "best_loss", "best_epoch", "last_losses")


def settings_digest(config: dict) -> float:
    """A number that two workers' run configs share only when they train the same run (settings,
    synths, data fingerprint, distribution; not the progress or the paths): 48 bits of a SHA-256,
    exact in a float64."""
    same = {k: v for k, v in config.items() if k not in _PER_WORKER}
    digest = hashlib.sha256(json.dumps(same, sort_keys=True, default=str).encode()).digest()
    return float(int.from_bytes(digest[:6], "big"))


SCRATCH = "asp-worker"  # tempfile.gettempdir()/asp-worker<index>-<pid>-<random>: a worker's copy of the run
_SCRATCH_NAME = re.compile(rf"^{SCRATCH}\d+-(\d+)-")


def _remove_stale_scratch() -> None:
    """Removes the temp folders of workers of this machine that were killed (their process is
    gone) before they could remove their own."""
    root = Path(tempfile.gettempdir())
    for p in root.iterdir():
        m = _SCRATCH_NAME.match(p.name)
        if m and p.is_dir() and not p.is_symlink() and not _alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def _copy_checkpoints(run_dir: Path, scratch: Path) -> None:
    """Copies what resuming reads (config.json, the best weights, the backups) from the run
    folder, if this worker sees it, into its temp folder; files a writer has not finished are
    left out (they are renamed into place whole)."""
    if not run_dir.is_dir():
        return
    (scratch / BACKUP).mkdir()
    names = [CONFIG, WEIGHTS] + [f"{BACKUP}/{p.name}" for p in sorted((run_dir / BACKUP).glob("epoch_*.weights.h5"))]
    for name in names:
        with contextlib.suppress(FileNotFoundError):  # replaced or trimmed by the chief meanwhile
            shutil.copyfile(run_dir / name, scratch / name)


# -- setting up the strategy --------------------------------------------------------------


def connect(cfg: TrainConfig) -> Cluster:
    """The run's ``Cluster``: for ``--distribute`` mirrored or multi-worker, its strategy, made
    before any other TensorFlow operation (a multi-worker strategy waits here for every worker
    of ``TF_CONFIG`` to start).

    Raises:
        ASPError: a distributed run under another Keras backend than TensorFlow, --devices with
            multi-worker, a missing or malformed ``TF_CONFIG``, a mirrored run that finds one
            device.
    """
    if cfg.distribute == "none":
        if cfg.devices:
            raise ASPError("--devices names the devices of --distribute mirrored; add --distribute mirrored")
        return Cluster("none", None)
    if keras_backend() != "tensorflow":
        raise ASPError(
            f"--distribute {cfg.distribute} needs Keras' TensorFlow backend, but KERAS_BACKEND is "
            f"{keras_backend()}; unset KERAS_BACKEND (or set it to tensorflow), or train with --distribute none"
        )
    tf = tensorflow()
    if cfg.distribute == "mirrored":
        return _mirrored(tf, cfg.devices)
    if cfg.devices:
        raise ASPError(
            "--devices is for --distribute mirrored; a multi-worker run uses every GPU of each worker "
            "(hide some with CUDA_VISIBLE_DEVICES)"
        )
    cluster, task = _tf_config()
    key = ("multi-worker", os.environ[TF_CONFIG])
    if key not in _STRATEGY:
        if cfg.verbose:
            print(f"waiting for the {len(cluster)} workers of TF_CONFIG ({', '.join(cluster)})", flush=True)
        others = [a for i, a in enumerate(cluster) if i != task]
        fix = f"start every worker of {TF_CONFIG} with the same command, or check their addresses ({DOCS})"
        wait_for_peers(others, cluster[task], what="workers of TF_CONFIG", fix=fix)  # TensorFlow's wait has no end
        _STRATEGY[key] = tf.distribute.MultiWorkerMirroredStrategy()
    strategy = _STRATEGY[key]
    workers = len(cluster)
    return Cluster(
        "multi-worker",
        strategy,
        replicas=strategy.num_replicas_in_sync,
        workers=workers,
        worker=task,
        chief=bool(strategy.extended.should_checkpoint),
    )


def _tf_config() -> tuple[list[str], int]:
    """The workers' addresses and this worker's index in them (a ``chief`` task counts as
    worker 0), from ``TF_CONFIG``, checked."""
    text = os.environ.get(TF_CONFIG)
    fix = f"set it on every worker, e.g. {TF_CONFIG_EXAMPLE} with index 0, 1, ... ({DOCS})"
    if not text:
        raise ASPError(f"--distribute multi-worker reads its cluster from {TF_CONFIG}, which is not set; {fix}")
    try:
        spec = parse_json(text, TF_CONFIG, fix)
        jobs = spec["cluster"]
        kind, index = spec["task"]["type"], spec["task"]["index"]
        chief = list(jobs.get("chief", []))
        workers = chief + list(jobs.get("worker", []))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ASPError(f"{TF_CONFIG} is not a cluster and a task ({text[:120]!r}); {fix}") from None
    if kind not in ("chief", "worker") or not isinstance(index, int) or isinstance(index, bool):
        raise ASPError(f"{TF_CONFIG}'s task must be a chief or a worker with an integer index, got {spec['task']!r}")
    position = index if kind == "chief" else len(chief) + index
    if not (0 <= index < len(jobs.get(kind, []))):
        raise ASPError(f"{TF_CONFIG}'s task is {kind} {index}, but its cluster lists {len(jobs.get(kind, []))}")
    if not all(isinstance(w, str) and ":" in w for w in workers):
        raise ASPError(f"{TF_CONFIG}'s cluster must list workers as host:port, got {workers!r}")
    return workers, position


def _mirrored(tf, devices: str | None) -> Cluster:
    """MirroredStrategy over ``devices`` (comma-separated; default every GPU). Naming CPU:1 or
    above splits the CPU into that many logical devices (the tests' way to mirror without GPUs);
    that has to happen before TensorFlow starts."""
    names = [d.strip() for d in devices.split(",") if d.strip()] if devices else None
    key = ("mirrored", tuple(names or ()))
    if key not in _STRATEGY:
        if names:
            cpus = [int(n.split(":")[1]) for n in names if n.upper().startswith("CPU:") and n.split(":")[1].isdigit()]
            if cpus and max(cpus) > 0:
                physical = tf.config.list_physical_devices("CPU")[0]
                try:
                    tf.config.set_logical_device_configuration(
                        physical, [tf.config.LogicalDeviceConfiguration()] * (max(cpus) + 1)
                    )
                except RuntimeError:
                    raise ASPError(
                        f"--devices {devices}: the CPU can be split only before TensorFlow starts; run this "
                        "training in a fresh process"
                    ) from None
            known = {d.name.split("device:")[-1].upper() for d in tf.config.list_logical_devices()}
            unknown = [n for n in names if n.upper().split("DEVICE:")[-1] not in known]
            if unknown:
                raise ASPError(
                    f"--devices names {', '.join(unknown)}, which this machine lacks; it has {', '.join(sorted(known))}"
                )
        elif not tf.config.list_logical_devices("GPU"):
            raise ASPError(
                "--distribute mirrored found no GPU (TensorFlow sees the CPU only); train with --distribute none, "
                "or name devices with --devices"
            )
        _STRATEGY[key] = tf.distribute.MirroredStrategy(names)
    strategy = _STRATEGY[key]
    return Cluster("mirrored", strategy, replicas=strategy.num_replicas_in_sync)
