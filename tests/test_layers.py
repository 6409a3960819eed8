"""The import contract (pyproject.toml, [tool.importlinter]): the real import graph keeps it, and a
deliberately added cycle or upward import breaks it."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("asp", "data", "data_generation", "experiments")
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the packages in root, not the installed ones
    return subprocess.run([LINT, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def copy_project(tmp_path: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_project_keeps_its_import_contract():
    res = lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # a cycle inside a package: results is imported by evaluate
        ("asp/evaluation/results.py", "from asp.evaluation import evaluate", "No import cycle"),
        # an upward import: the synth layer importing the trainer
        ("data_generation/spec.py", "import asp.training", "- data_generation.spec -> asp.training"),
        # a cycle across packages: data importing the dataset builder, which imports data
        ("data/encoding.py", "import asp.builder", "- data.encoding -> asp.builder"),
    ],
)
def test_an_added_cycle_or_upward_import_breaks_the_contract(tmp_path, module, line, broken):
    root = copy_project(tmp_path)
    with open(root / module, "a") as f:
        f.write(f"\n{line}  # noqa\n")
    res = lint(root)
    assert res.returncode != 0 and broken in res.stdout, res.stdout + res.stderr


ALLOWED_FOR_MODELS = ("asp", "asp.backend", "asp.checkpoints", "asp.config", "asp.errors", "data.encoding")
ALLOWED_FOR_MODELS += ("data_generation.spec",)


def test_the_network_module_imports_only_what_lies_below_it():
    """models.py is a top-level module, outside the graph import-linter builds: it may import the
    base of asp (errors, settings, a run's config), the encoding and the specs (and outside
    libraries), nothing above it."""
    tree = ast.parse((ROOT / "models.py").read_text())
    project = []
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "asp"]
        project += [n for n in names if n.split(".")[0] in PACKAGES]
    assert project and all(n in ALLOWED_FOR_MODELS for n in project), project


COMMANDS = [
    *(f"train_{name}.py" for name in ("multi", "single", "synth", "serum", "diva", "tyrell")),
    "run_inference.py",
    "add_generative_head.py",
    *(f"experiments/{name}.py" for name in ("evaluate", "run", "audibility")),
    *(f"data_generation/{name}.py" for name in ("generate", "render_presets", "view_parameters", "demo_sound")),
    "data_generation/build_plugins.py",
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.slow
def test_every_command_loads_dawdreamer_before_tensorflow(command):
    """The other order segfaults: a command's first project import is from asp (whose __init__
    imports asp.backend, DawDreamer, first), and running it loads DawDreamer before TensorFlow."""
    tree = ast.parse((ROOT / command).read_text())
    first = next(
        (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name).split(".")[0]
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        and (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name).split(".")[0]
        in (*PACKAGES, "models")
    )
    assert first == "asp", f"{command} imports {first} before asp"
    res = subprocess.run(
        [sys.executable, "-X", "importtime", command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    loaded = [line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")]
    assert "dawdreamer" in loaded, command
    if "tensorflow" in loaded:
        assert loaded.index("dawdreamer") < loaded.index("tensorflow"), command
