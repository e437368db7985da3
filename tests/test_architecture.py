"""The package map of docs/architecture.md, checked: who may import whom, and what the page names.

Every import of a glaviz module, at module level or inside a function, must go to a lower layer or
to a package of the same layer that the page allows; the two upward lazy imports the page
documents are the only exceptions. Every file the page's "where does behaviour X live" table names
must exist, so the table cannot silently go stale.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "glaviz"

#: Layer of each top-level room (package or module) of glaviz, as in docs/architecture.md.
LAYERS: dict[str, int] = {
    "errors": 0,
    "util": 0,
    "published": 1,
    "config": 1,
    "runs": 2,
    "registry": 2,
    "model": 3,
    "acquire": 4,
    "engine": 4,
    "features": 4,
    "evaluation": 4,
    "calibration": 4,
    "inventory": 4,
    "change": 4,
    "training": 4,
    "samples": 4,
    "api": 5,
    "batch": 5,
    "result": 5,
    "cli": 6,
}

#: Imports within one layer that the page allows (importer, imported).
SAME_LAYER = {
    ("util", "errors"),
    ("config", "published"),
    ("runs", "registry"),
    ("registry", "runs"),
    ("engine", "calibration"),
    ("calibration", "evaluation"),
    ("inventory", "features"),
    ("samples", "features"),
    ("acquire", "features"),
    ("change", "inventory"),
    ("change", "engine"),
}

#: Upward imports the page documents; each is inside a function (checked below).
UPWARD = {
    ("published", "registry"),
    ("registry", "model"),
}


def _room(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(imported room, at module level)`` of every glaviz import in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "glaviz":
                names = [f"glaviz.{alias.name}" for alias in node.names]
            elif node.module.startswith("glaviz."):
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("glaviz.")]
        for name in names:
            room = name.split(".")[1]
            if room in LAYERS:
                found.append((room, id(node) in top))
    return found


def test_every_room_has_a_layer() -> None:
    rooms = {_room(p) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert rooms <= set(LAYERS), f"rooms missing from docs/architecture.md: {rooms - set(LAYERS)}"


def test_imports_follow_the_layers() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        room = _room(path)
        if room not in LAYERS:
            continue
        for target, module_level in _imports(path):
            if target == room:
                continue
            mine, theirs = LAYERS[room], LAYERS[target]
            allowed = theirs < mine or (theirs == mine and (room, target) in SAME_LAYER)
            if not allowed and (room, target) in UPWARD and not module_level:
                allowed = True
            if not allowed:
                where = "module level" if module_level else "in a function"
                wrong.append(f"{path.relative_to(ROOT)} imports glaviz.{target} ({where})")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


def test_the_page_names_files_that_exist() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`(glaviz/[\w/]+\.py)`", page))
    assert len(named) >= 15
    missing = sorted(n for n in named if not (ROOT / n).is_file())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_code_and_docs_stand_alone() -> None:
    """Comments and docs point to pages of this repository, never to design files beside it."""
    outside = re.compile(r"DESIGN\.md|ARCHITECTURE\.md|STYLE\.md|\.\./shared")
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "docs").glob("*.md"), ROOT / "README.md"]
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if outside.search(line)
    ]
    assert not found, f"pointers outside the repository: {found}"


def test_readme_gets_a_newcomer_from_make_demo_to_a_map_of_their_own() -> None:
    readme = (ROOT / "README.md").read_text()
    for step in ("source .venv/bin/activate", "python -m glaviz.samples scene", "--weights demo"):
        assert step in readme, step
    assert "docs/architecture.md" in readme and "shared/reference" in readme
