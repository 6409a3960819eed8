"""The docs cannot rot silently: every relative link and image in README.md and docs/**/*.md
resolves (the file exists and, for a link into a markdown page, the heading its anchor names), and
every command line in their shell code blocks that runs a project script (``python X.py ...``,
``.venv/bin/python X.py ...``, ``make TARGET``) names a script that exists and flags that its
``--help`` lists, or targets the Makefile has. Each script's ``--help`` runs once, in a subprocess
with this interpreter (the project's venv)."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELL_BLOCKS = {"bash", "sh", "shell", "console", ""}
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...
FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HTML_SRC = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
PYTHON = re.compile(r"(^|/)python(3(\.\d+)?)?$")
SEPARATORS = {"&&", "||", ";", "|"}


def doc_files(root: Path) -> list[Path]:
    """README.md and every markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def blocks(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The lines outside fenced code blocks, and each block as (language, lines)."""
    prose, found, fence, lines = [], [], None, []
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence, language, lines = match.group(1), match.group(2).lower(), []
        elif fence is not None and line.strip().startswith(fence):
            found.append((language, lines))
            fence = None
        elif fence is not None:
            lines.append(line)
        else:
            prose.append(line)
    return prose, found


def links(text: str) -> list[str]:
    """Link and image targets of a markdown page, code blocks and inline code left out."""
    prose, _ = blocks(text)
    targets = []
    for line in prose:
        if REFERENCE_LINK.match(line):
            targets.append(REFERENCE_LINK.match(line).group(1))
            continue
        line = re.sub(r"`[^`]*`", "", line)
        targets += INLINE_LINK.findall(line) + HTML_SRC.findall(line)
    return targets


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    """The anchors of a markdown page's headings (repeated headings get -1, -2, ... as on GitHub)."""
    prose, _ = blocks(page.read_text())
    found, counts = set(), {}
    for line in prose:
        match = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            found.add(f"{base}-{counts[base]}" if base in counts else base)
            counts[base] = counts.get(base, 0) + 1
    return frozenset(found)


def broken_links(root: Path) -> list[str]:
    """Every relative link or image of README.md and docs/ that does not resolve, as
    'page: target (why)'."""
    broken = []
    for page in doc_files(root):
        for target in links(page.read_text()):
            if EXTERNAL.match(target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            name = page.relative_to(root)
            if not resolved.exists():
                broken.append(f"{name}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{name}: {target} (no heading #{anchor} in {resolved.name})")
    return broken


def command_lines(text: str) -> list[str]:
    """The command lines of a page's shell code blocks, continuation lines joined."""
    commands = []
    for language, lines in blocks(text)[1]:
        if language not in SHELL_BLOCKS:
            continue
        joined = "\n".join(lines).replace("\\\n", " ")
        commands += [line.strip().removeprefix("$ ") for line in joined.splitlines() if line.strip()]
    return commands


def project_commands(line: str) -> list[list[str]]:
    """The commands of a line that run a project script or make, as token lists."""
    words = line.split()
    while words and (re.match(r"^\w+=", words[0]) or words[0] == "sudo"):
        words = words[1:]
    if not words or not (words[0] == "make" or PYTHON.search(words[0])):
        return []
    tokens, found, current = shlex.split(line, comments=True), [], []
    for token in tokens:
        if token in SEPARATORS:
            found, current = found + [current], []
        else:
            current.append(token)
    found.append(current)
    return [c for c in found if c and (c[0] == "make" or PYTHON.search(c[0]))]


@cache
def make_targets(root: Path) -> frozenset[str]:
    """The targets the Makefile defines."""
    targets = set()
    for line in (root / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-][A-Za-z0-9_.\- ]*):(?!=)", line)
        if match and not line.startswith((".PHONY", "\t")):
            targets.update(match.group(1).split())
    return frozenset(targets)


@cache
def script_help(script: Path) -> str:
    """A script's --help output (one subprocess per script, with this interpreter)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{script.relative_to(ROOT)} --help failed: {done.stderr[-2000:]}"
    return done.stdout


def command_problems(root: Path, command: list[str]) -> list[str]:
    """What is wrong with one command: a missing script, a flag its --help lacks, a make target
    the Makefile lacks."""
    line = shlex.join(command)
    if command[0] == "make":
        targets = [t for t in command[1:] if not t.startswith("-") and "=" not in t]
        return [f"{line}: no make target {t!r}" for t in targets if t not in make_targets(root)]
    args = command[1:]
    if not args or args[0] == "-m" or args[0].startswith("-"):
        return []  # python -m MODULE, or python's own options: not a project script
    script = root / args[0]
    if not script.is_file():
        return [f"{line}: no script {args[0]}"]
    flags = [a.split("=", 1)[0] for a in args[1:] if re.match(r"^--?[A-Za-z]", a)]
    text = script_help(script)
    return [
        f"{line}: {args[0]} --help lists no {flag}"
        for flag in flags
        if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text)
    ]


def commands_of(root: Path) -> list[list[str]]:
    """Every project command in the shell code blocks of README.md and docs/."""
    return [c for page in doc_files(root) for line in command_lines(page.read_text()) for c in project_commands(line)]


def problems(root: Path, commands: list[list[str]]) -> list[str]:
    """Every problem of these commands; the scripts' --help run two at a time."""
    scripts = {root / c[1] for c in commands if c[0] != "make" and len(c) > 1 and (root / c[1]).is_file()}
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(script_help, sorted(scripts)))
    return [p for c in commands for p in command_problems(root, c)]


def copy_docs(root: Path, to: Path) -> Path:
    """README.md, docs/ and every other file or folder they link to, copied to ``to``."""
    shutil.copytree(root / "docs", to / "docs")
    shutil.copy(root / "README.md", to / "README.md")
    for page in doc_files(root):
        for target in links(page.read_text()):
            path = target.partition("#")[0]
            source = (page.parent / path).resolve()
            if EXTERNAL.match(target) or not path or not source.is_relative_to(root):
                continue
            copy = to / source.relative_to(root)
            if source.is_dir():
                copy.mkdir(parents=True, exist_ok=True)
            elif source.is_file() and not copy.exists():
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, copy)
    return to


def test_links_and_images_resolve():
    assert broken_links(ROOT) == []


def test_the_link_checker_catches_a_broken_link(tmp_path):
    copy = copy_docs(ROOT, tmp_path)
    assert broken_links(copy) == []  # the copy is whole: what breaks below is what the test breaks
    with open(copy / "README.md", "a") as readme:
        readme.write("\nSee [the missing page](docs/missing.md) and ![a plot](docs/missing.png).\n")
    with open(copy / "docs" / "installation.md", "a") as page:
        page.write("\nBack to [the quick start](../README.md#no-such-heading); `[code](not/a/link.md)`.\n")
    assert broken_links(copy) == [
        "README.md: docs/missing.md (no such file)",
        "README.md: docs/missing.png (no such file)",
        "docs/installation.md: ../README.md#no-such-heading (no heading #no-such-heading in README.md)",
    ]


def test_readme_and_docs_commands_name_scripts_and_flags_that_exist():
    commands = commands_of(ROOT)
    readme = [c for line in command_lines((ROOT / "README.md").read_text()) for c in project_commands(line)]
    assert any(c[0] == "make" for c in readme) and any(c[0] != "make" for c in readme)  # the parser finds them
    assert problems(ROOT, commands) == []


def test_the_command_checker_catches_a_wrong_script_flag_or_target():
    text = """```bash
.venv/bin/python run_inference.py --input x.wav --no-such-flag 3   # a comment --not-a-flag
.venv/bin/python no_such_script.py --help
make demo no-such-target REQUIREMENTS=requirements-gpu.txt && python run_inference.py --refine=5
sudo apt-get install amsynth
```"""
    commands = [c for line in command_lines(text) for c in project_commands(line)]
    assert [c[:2] for c in commands] == [
        [".venv/bin/python", "run_inference.py"],
        [".venv/bin/python", "no_such_script.py"],
        ["make", "demo"],
        ["python", "run_inference.py"],
    ]
    assert problems(ROOT, commands) == [
        ".venv/bin/python run_inference.py --input x.wav --no-such-flag 3: run_inference.py --help lists no "
        "--no-such-flag",
        ".venv/bin/python no_such_script.py --help: no script no_such_script.py",
        "make demo no-such-target REQUIREMENTS=requirements-gpu.txt: no make target 'no-such-target'",
    ]
