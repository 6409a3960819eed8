"""asp.cluster without a cluster: what --ray means, its one-line errors, the local default, and a
retried shard task that writes nothing twice. (The cluster itself: tests/test_ray.py.)"""

import argparse
import contextlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from asp import cluster
from asp.builder import Settings, make_plan, read_shard, render_shard
from asp.errors import ASPError

ROOT = Path(__file__).resolve().parent.parent


def test_a_bare_ray_takes_RAY_ADDRESS_else_the_cluster_of_this_machine(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert cluster.resolve_address("") == cluster.resolve_address(None) == "10.1.2.3:6379"
    assert cluster.resolve_address("10.9.9.9:7000") == "10.9.9.9:7000"  # an address given wins
    monkeypatch.delenv("RAY_ADDRESS")
    assert cluster.resolve_address("") == "auto"


def test_a_path_read_as_the_address_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ASPError, match="--ray=ADDRESS"):
        cluster.resolve_address(str(tmp_path))


def test_ray_with_workers_is_refused():
    args = argparse.Namespace(ray="", workers=2)
    with pytest.raises(ASPError, match="ray start --num-cpus"):
        cluster.session_from_args(args)
    assert isinstance(cluster.session_from_args(argparse.Namespace(ray=None, workers=2)), contextlib.nullcontext)


def test_an_address_nothing_answers_at_fails_at_once():
    with socket.socket() as s:  # a port nothing listens on (bound, never listening)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(ASPError, match=f"nothing answers at the Ray address 127.0.0.1:{port}"):
            cluster._check_reachable(f"127.0.0.1:{port}")


def test_without_ray_installed_ray_is_one_line_naming_pip_install(tmp_path, tmp_out):
    hidden = tmp_path / "no_ray" / "ray"  # an import of ray fails, as where it is not installed
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    res = subprocess.run(
        [sys.executable, "data_generation/generate.py", "--synths", "va", "--n", "2", "--out", str(tmp_out), "--ray"],
        cwd=ROOT,
        env={"PYTHONPATH": str(hidden.parent), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"error: --ray needs Ray, which is not installed: {cluster.INSTALL}"]
    assert "pip install -r requirements-ray.txt" in cluster.INSTALL


def test_outside_a_session_tasks_run_on_the_local_pool():
    assert not cluster.connected()
    assert sorted(cluster.run_tasks(pow, [(2, 3), (3, 2)], workers=1)) == [8, 9]


def test_a_shard_task_run_again_keeps_what_its_first_try_wrote(tmp_path):
    """A Ray task whose worker died after writing its shard runs again: nothing is written twice."""
    plan = make_plan(Settings(synths=("va",), presets={"va": ("random",)}, n=3, notes=(60,), seed=0))
    shard, spec = plan.shards[0], str(plan.specs[0].path)
    first = render_shard(shard, spec, False, str(tmp_path))
    path = tmp_path / shard.file
    before = path.stat()
    again = render_shard(shard, spec, False, str(tmp_path))
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert {k: again[k] for k in ("index", "samples", "kept")} == {k: first[k] for k in ("index", "samples", "kept")}
    assert read_shard(path, shard) is not None


@pytest.mark.slow
def test_without_ray_installed_the_local_pool_runs_as_before(tmp_path, tmp_out):
    """Ray is imported only for --ray: a command without it runs where Ray is not installed."""
    hidden = tmp_path / "no_ray" / "ray"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    res = subprocess.run(
        [sys.executable, "data_generation/generate.py", "--synths", "va", "--n", "2", "--out", str(tmp_out / "d")],
        cwd=ROOT,
        env={"PYTHONPATH": str(hidden.parent), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "rendered 2 samples" in res.stdout and (tmp_out / "d" / "manifest.json").exists()
