"""Static files of the web dashboard: a fixed set read from one folder, nothing outside it.

The set is the folder's listing taken when the directory is opened, so a request path can only
name a file that was shipped (no ``..``, no absolute paths, no symlinks out, no hidden files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.errors import ErrorCode, UserError

# What the dashboard ships, and the type each is served as. Anything else is not served.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}


@dataclass(frozen=True)
class Asset:
    """One file to serve."""

    path: str
    body: bytes
    content_type: str

    @property
    def is_html(self) -> bool:
        """Whether this is a page (it gets the Content-Security-Policy)."""
        return self.path.endswith(".html")


class AssetDirectory:
    """The servable files under ``root``, by their relative POSIX path."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
        self._files: dict[str, Path] = {}
        for path in sorted(self._root.rglob("*")):
            rel = path.relative_to(self._root)
            if (
                path.is_file()
                and not path.is_symlink()
                and path.suffix in CONTENT_TYPES
                and not any(part.startswith(".") for part in rel.parts)
            ):
                self._files[rel.as_posix()] = path

    @property
    def names(self) -> list[str]:
        """Every servable path, sorted."""
        return sorted(self._files)

    def get(self, path: str) -> Asset:
        """The file at ``path``; ``NotFound`` when the dashboard ships no such file."""
        found = self._files.get(path)
        if found is None:
            raise UserError(ErrorCode.NOT_FOUND, f"the dashboard has no file {path!r}", target="path")
        return Asset(path, found.read_bytes(), CONTENT_TYPES[found.suffix])
