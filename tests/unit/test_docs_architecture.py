"""docs/architecture.md tied to the code: every file it names exists, and every function, class
or attribute it names is defined where it says.

The page is the newcomer's map ("where is a request parsed, answered, counted; where is a
worker's fate decided"), so a stale name there costs exactly the minutes it promises to save.
References are the backticked spans: ``path.py`` and ``path.py:Name.attr`` (relative to
src/corral or the repository; a bare ``file.py`` is looked for next to the last file the same
line named), and ``Class.attr`` or ``_private`` names (a method of any class, for the latter),
resolved in the last file the line named, else anywhere in src/corral. Names are read with
``ast`` (module level, and one level into classes, ``self.x = ...`` in methods included);
nothing is imported.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "corral"
DOC = ROOT / "docs" / "architecture.md"

pytestmark = pytest.mark.timeout(30)

_FILE_REF = re.compile(r"^(?:corral/)?([\w/]+\.py)(?::([\w.]+))?$")
_NAME_REF = re.compile(r"^(?:_\w+|[A-Z]\w*\.\w+)$")


def _targets(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _self_attributes(method: ast.stmt) -> set[str]:
    return {
        node.attr
        for node in ast.walk(method)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    }


@cache
def names_in(path: Path) -> frozenset[str]:
    """``name`` and ``Class.attr`` for what the module defines."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        found.update(_targets(node))
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                found.update(f"{node.name}.{n}" for n in _targets(item))
                found.update(f"{node.name}.{a}" for a in _self_attributes(item))
    return frozenset(found)


def _find(rel: str, near: Path | None) -> Path | None:
    candidates = [PACKAGE / rel, ROOT / rel]
    if near is not None:
        candidates.append(near.parent / rel)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def _defines(path: Path, name: str) -> bool:
    """``Class.attr`` as written; a bare ``_name`` at module level or in any of its classes."""
    names = names_in(path)
    return name in names or ("." not in name and any(n.endswith(f".{name}") for n in names))


def _defined(name: str, near: Path | None) -> bool:
    if near is not None and _defines(near, name):
        return True
    return any(_defines(p, name) for p in PACKAGE.rglob("*.py"))


def stale_references(text: str) -> list[str]:
    """Each reference of the page that does not resolve, with its line number."""
    stale: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        near: Path | None = None
        for ref in re.findall(r"`([^`\n]+)`", line):
            file_ref = _FILE_REF.match(ref)
            if file_ref:
                found = _find(file_ref.group(1), near)
                if found is None:
                    stale.append(f"{number}: {ref} (no such file)")
                    continue
                near = found
                name = file_ref.group(2)
                if name and name not in names_in(found):
                    stale.append(f"{number}: {ref} (no {name} there)")
            elif _NAME_REF.match(ref) and not _defined(ref, near):
                where = near.relative_to(PACKAGE) if near else "src/corral"
                stale.append(f"{number}: {ref} (not defined in {where})")
    return stale


def test_the_checker_sees_what_a_stale_page_would_say() -> None:
    page = "\n".join(
        [
            "| parsed | `http/connection.py:Connection.next_event` → `_next_head` |",
            "| gone | `worker/respond.py:head_if_needed`, `http/connection.py:Connection.nope` |",
            "| moved | `WorkerLoop._protocol_error` and `WorkerLoop._no_such_step` |",
            "| near | `master/arbiter.py` and the `policy.py` next to it; `--threads` |",
        ]
    )
    assert stale_references(page) == [
        "2: worker/respond.py:head_if_needed (no such file)",
        "2: http/connection.py:Connection.nope (no Connection.nope there)",
        "3: WorkerLoop._no_such_step (not defined in src/corral)",
    ]


def test_every_file_and_name_the_architecture_page_gives_exists() -> None:
    stale = stale_references(DOC.read_text(encoding="utf-8"))
    assert not stale, "docs/architecture.md names what is not there:\n" + "\n".join(stale)
