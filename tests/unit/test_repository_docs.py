"""The repository explains itself: comments point only to its own docs, and `make test` type-checks all of it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIP = {".git", ".venv", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache", "test-artifacts"}
# Documents that live outside the repository: a clone does not have them.
OUTSIDE = re.compile(r"DESIGN(\.md|\s+C\d|\s+§)|PLATFORM-NOTES|STYLE\.md|design card|the brief")
DOCS_REFERENCE = re.compile(r"docs/([\w-]+\.md)(?:'s)?(?: (C\d+))?")
PACKAGES = {"shared", "functions", "pgvault", "devhost", "bench"}


def _texts(root: Path) -> dict[str, str]:
    """Every Python, Markdown and JavaScript file under ``root`` but tools' folders, by relative path."""
    found = {}
    for path in root.rglob("*"):
        if path.suffix in {".py", ".md", ".js"} and not SKIP & set(path.relative_to(root).parts) and path.is_file():
            found[path.relative_to(root).as_posix()] = path.read_text(errors="replace")
    return found


def outside_references(root: Path) -> list[str]:
    """``file:line: text`` of every line under ``root`` that points to a document outside the repository."""
    return [
        f"{name}:{number}: {line.strip()}"
        for name, text in sorted(_texts(root).items())
        if name != "tests/unit/test_repository_docs.py"
        for number, line in enumerate(text.splitlines(), 1)
        if OUTSIDE.search(line)
    ]


def test_no_comment_or_document_points_to_a_document_outside_the_repository() -> None:
    assert outside_references(REPO) == []


def test_every_reference_to_docs_names_a_file_and_a_rule_that_exist() -> None:
    cited = {(m[1], m[2]) for text in _texts(REPO).values() for m in DOCS_REFERENCE.finditer(text)}
    assert ("rules.md", "C3") in cited  # the scan sees the references it checks
    for doc, rule in sorted(cited, key=str):
        path = REPO / "docs" / doc
        assert path.is_file(), f"docs/{doc} is cited but does not exist"
        if rule:
            assert f"| {rule} |" in path.read_text(), f"docs/{doc} has no rule {rule}"


def test_make_typecheck_runs_mypy_over_every_python_package() -> None:
    recipe = re.search(r"^typecheck:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert recipe, "the Makefile has no typecheck target"
    words = shlex.split(recipe[1])
    assert any(w.endswith("mypy") for w in words)
    assert set(words) >= PACKAGES, f"mypy does not check {sorted(PACKAGES - set(words))}"
    test = re.search(r"^test:(.*)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert test and "typecheck" in test[1].split()
