"""Ray (asp.cluster): the commands on a real two-node Ray cluster on this machine's loopback
(asp.localcluster: `ray start --head` and `ray start --address`, one CPU each), against the same
commands on the local pool; a worker process and a whole node killed mid-run. No mock of Ray:
skipped where Ray is not installed (pip install -r requirements-ray.txt; CI installs it)."""

import csv
import filecmp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

try:
    import ray  # noqa: F401
except ImportError:
    pytest.skip("Ray is not installed (pip install -r requirements-ray.txt; CI installs it)", allow_module_level=True)

from asp.localcluster import LocalCluster

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # a few minutes in all: make test-all and CI run them

ROOT = Path(__file__).resolve().parent.parent
# 600 sounds of the three built-in synths: 21 shards
GENERATE = [sys.executable, "data_generation/generate.py", "--synths", "va", "fm", "modal", "--n", "200", "--no-hpss"]
SHARDS = 21
TIMEOUT = 600


@pytest.fixture(scope="session")
def ray_cluster():
    """Two nodes of one CPU each, stopped (by their own process ids) whatever happens."""
    with LocalCluster(nodes=2, cpus_per_node=1, object_store_mb=200) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory):
    """The dataset made by the same command on the local pool (all cores)."""
    out = tmp_path_factory.mktemp("pool") / "data"
    res = subprocess.run([*GENERATE, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def start_generate(cluster: LocalCluster, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*GENERATE, "--out", str(out), "--ray", cluster.address],
        cwd=ROOT,
        env={**os.environ, **cluster.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> str:
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    return stdout


def shards_done(out: Path) -> int:
    return len(list((out / ".work").glob("shard_*.npz")))  # temps end in .tmp


def assert_identical(expected: Path, out: Path) -> None:
    names = sorted(p.name for p in expected.iterdir() if p.suffix == ".npy" or p.name == "manifest.json")
    assert len(names) > 30 and names == sorted(
        p.name for p in out.iterdir() if p.suffix == ".npy" or p.name == "manifest.json"
    )
    different = [n for n in names if not filecmp.cmp(expected / n, out / n, shallow=False)]
    assert not different, different
    assert not (out / ".work").exists()  # assembled by the driver, the shards removed
    assert not list(out.glob(".ray_probe*"))  # the driver's probe file is gone


def wait_for(condition, proc: subprocess.Popen, what: str):
    """Polls ``condition`` until it returns something true; fails when the run ends first."""
    while True:
        value = condition()
        if value:
            return value
        assert proc.poll() is None, f"the run ended before {what}"
        time.sleep(0.05)


def test_a_dataset_made_on_a_two_node_cluster_is_byte_identical_to_the_local_pools(
    ray_cluster, local_dataset, tmp_path
):
    out = tmp_path / "data"
    proc = start_generate(ray_cluster, out)
    nodes = set()
    while proc.poll() is None:
        nodes |= set(ray_cluster.task_workers())
        time.sleep(0.05)
    stdout = finish(proc)
    assert "dataset written" in stdout and "rendered 600 samples" in stdout
    assert nodes == {0, 1}  # both nodes rendered shards
    assert_identical(local_dataset, out)


def test_a_worker_process_killed_mid_run_costs_its_task_only(ray_cluster, local_dataset, tmp_path):
    out = tmp_path / "data"
    proc = start_generate(ray_cluster, out)
    wait_for(lambda: shards_done(out) >= 2, proc, "two shards were written")
    busy = wait_for(lambda: ray_cluster.task_workers().get(1), proc, "a worker of node 1 was busy")
    done = shards_done(out)
    os.kill(busy[0], signal.SIGKILL)  # a worker process dies, its node lives on
    finish(proc)
    assert done < SHARDS  # it died mid-run
    assert_identical(local_dataset, out)


def test_a_node_killed_mid_run_costs_its_tasks_only(ray_cluster, local_dataset, tmp_path):
    out = tmp_path / "data"
    proc = start_generate(ray_cluster, out)
    try:
        wait_for(lambda: shards_done(out) >= 2, proc, "two shards were written")
        wait_for(lambda: ray_cluster.task_workers().get(1), proc, "node 1 was rendering")
        done = shards_done(out)
        ray_cluster.kill_node(1)  # the non-head node dies with the task it ran
        finish(proc)
    finally:
        if len(ray_cluster.nodes) < 2:
            ray_cluster.add_node()  # two nodes again for the tests after this one
    assert done < SHARDS
    assert_identical(local_dataset, out)


def test_a_driver_killed_mid_run_resumes_from_the_finished_shards(ray_cluster, local_dataset, tmp_path):
    out = tmp_path / "data"
    proc = start_generate(ray_cluster, out)
    wait_for(lambda: shards_done(out) >= 3, proc, "three shards were written")
    proc.kill()  # the driver dies (kill -9): Ray ends its tasks
    proc.communicate()
    deadline = time.monotonic() + 60
    while ray_cluster.task_workers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ray_cluster.task_workers()  # no task of the dead driver renders on
    done = sorted(int(p.stem.split("_")[1]) for p in (out / ".work").glob("shard_*.npz"))
    assert 3 <= len(done) < SHARDS
    stdout = finish(start_generate(ray_cluster, out))  # the same command again
    sizes = ([32] * 6 + [8]) * 3  # 200 samples per synth, in shards of 32
    assert f"rendered {600 - sum(sizes[i] for i in done)} samples" in stdout  # the finished shards were kept
    assert_identical(local_dataset, out)


def read_samples(path: Path) -> list[dict]:
    """samples.csv without its wall times (refine_seconds: how long each search ran)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and "refine_seconds" in rows[0]
    return [{k: v for k, v in row.items() if k != "refine_seconds"} for row in rows]


def run_locally_and_on_ray(command: list[str], tmp_path, ray_cluster) -> None:
    """Runs ``command`` with ``--out tmp_path/pool`` on the local pool, then with ``--out
    tmp_path/ray`` on the cluster; both must succeed."""
    local = subprocess.run(
        [*command, "--out", str(tmp_path / "pool")], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert local.returncode == 0, local.stderr[-3000:]
    on_ray = subprocess.run(
        [*command, "--out", str(tmp_path / "ray"), "--ray", ray_cluster.address],
        cwd=ROOT,
        env={**os.environ, **ray_cluster.env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]


def test_evaluate_with_refine_renders_gives_the_same_samples_csv_on_ray(ray_cluster, tiny_data, tiny_models, tmp_path):
    """A sound of fm and one of modal: one-shot, nearest and a search of 30 renders each, as one task per
    sound on the cluster; the local run searches them one by one with 2 workers (--workers: all cores)."""
    command = [sys.executable, "experiments/evaluate.py", str(tiny_models / "vae_multi_8_paper"), "-d", str(tiny_data)]
    command += ["--synths", "fm", "modal", "--baselines", "nearest", "--refine-renders", "30", "--refine-starts", "2"]
    command += ["--report-samples", "0"]
    run_locally_and_on_ray(command, tmp_path, ray_cluster)
    expected = read_samples(tmp_path / "pool" / "samples.csv")
    assert read_samples(tmp_path / "ray" / "samples.csv") == expected
    searched = [r for r in expected if r["method"] == "multi+search"]
    assert len(searched) == 2 and all(0 < int(r["refine_renders"]) <= 30 for r in searched)
    with np.load(tmp_path / "pool" / "presets.npz") as a, np.load(tmp_path / "ray" / "presets.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def test_audibility_on_ray_gives_the_same_sweeps(ray_cluster, tiny_data, tmp_path):
    command = [sys.executable, "experiments/audibility.py", str(tiny_data), "--synths", "fm", "modal"]
    run_locally_and_on_ray(command, tmp_path, ray_cluster)
    expected = (tmp_path / "pool" / "sweeps.csv").read_text()
    assert expected.count("\n") > 10 and (tmp_path / "ray" / "sweeps.csv").read_text() == expected


def test_a_run_that_fails_at_once_on_ray_is_one_line_and_leaves_no_folder(ray_cluster, tmp_path):
    out = tmp_path / "new" / "data"
    res = subprocess.run(
        [*GENERATE[:3], "nosuch", "--n", "2", "--out", str(out), "--ray", ray_cluster.address],
        cwd=ROOT,
        env={**os.environ, **ray_cluster.env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown synth 'nosuch'"), lines
    assert not out.parent.exists()  # the folders made for the probe file are gone again
