"""The import contract (pyproject.toml, [tool.importlinter]): the real import graph keeps it, and a
deliberately added cycle or upward import breaks it."""

import ast
import os
import re
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


# -- the architecture page places every module; no module or function is too long ------------------

PAGE = ROOT / "docs" / "architecture.md"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 450, 80
LONG_MODULES_ALLOWED = ("models.py",)  # the network, one module as in the paper's code (its functions count)


def project_modules(root: Path = ROOT) -> set[str]:
    """Every Python module of the project but the tests and packages' ``__init__.py``: repo-relative paths."""
    skip = {"tests", "build", "dist"}
    found = set()
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if parts[0] in skip or any(p.startswith(".") or p.endswith(".egg-info") for p in parts):
            continue
        if path.name != "__init__.py" and not (len(parts) == 1 and parts[0] == "setup.py"):
            found.add("/".join(parts))
    return found


def placed_modules(page: str, root: Path = ROOT) -> set[str]:
    """The modules the page's layer table names (its second column: ``dir/{a,b}.py``, ``train_*.py``)."""
    table = page[page.index("| layer | modules |") :].split("\n\n")[0]
    placed = set()
    for row in table.splitlines()[2:]:
        column = row.split(" | ")[1]
        for span in re.findall(r"`([^`]+)`", column):
            match = re.fullmatch(r"([\w/]*?)\{([\w,]+)\}\.py", span)
            names = [f"{match.group(1)}{n}.py" for n in match.group(2).split(",")] if match else [span]
            for name in names:
                if name.endswith(".py"):
                    hits = [str(p.relative_to(root)) for p in root.glob(name)] if "*" in name else [name]
                    placed.update(hits)
    return placed


def test_the_architecture_page_places_every_module():
    page = PAGE.read_text()
    modules, placed = project_modules(), placed_modules(page)
    assert not modules - placed, f"modules docs/architecture.md does not place: {sorted(modules - placed)}"
    assert not placed - modules, f"docs/architecture.md places modules that do not exist: {sorted(placed - modules)}"


def test_a_module_added_without_its_place_on_the_page_is_found(tmp_path):
    for name in ("asp", "bench"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "asp" / "evaluation" / "added.py").write_text('"""A module the page does not place."""\n')
    unplaced = project_modules(tmp_path) - placed_modules(PAGE.read_text(), tmp_path)
    assert unplaced == {"asp/evaluation/added.py"}


def too_long(root: Path = ROOT) -> list[str]:
    """Modules over MAX_MODULE_LINES lines (but LONG_MODULES_ALLOWED) and functions over
    MAX_FUNCTION_LINES lines (their docstrings included), as 'path: what'."""
    found = []
    for name in sorted(project_modules(root)):
        source = (root / name).read_text()
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES and name not in LONG_MODULES_ALLOWED:
            found.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{name}: {node.name} is {length} lines")
    return found


def test_no_module_over_450_lines_and_no_function_over_80():
    assert too_long() == []


def test_the_length_check_finds_a_long_module_and_a_long_function(tmp_path):
    body = "\n".join(f"    x{k} = {k}" for k in range(80))
    (tmp_path / "long.py").write_text(f"def f():\n{body}\n" + "y = 1\n" * 400)
    (tmp_path / "models.py").write_text("y = 1\n" * 500)  # allowed to be long
    assert too_long(tmp_path) == ["long.py: 481 lines", "long.py: f is 81 lines"]
