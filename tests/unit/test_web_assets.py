"""The dashboard's files: what is served, what never is, and that the shipped page holds together."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from functions.dashboard import WEB_ROOT
from shared.errors import UserError
from shared.web_assets import AssetDirectory

REPO = Path(__file__).resolve().parents[2]
SHIPPED = AssetDirectory(WEB_ROOT)
SCRIPTS = [n for n in SHIPPED.names if n.endswith(".js")]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    (root / "views").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html>")
    (root / "views" / "a.js").write_text("export {};")
    (root / ".hidden.js").write_text("secret")
    (root / "notes.py").write_text("secret")
    (tmp_path / "outside.js").write_text("secret")
    (root / "link.js").symlink_to(tmp_path / "outside.js")
    return root


def test_only_shipped_files_of_known_types_are_served(folder: Path) -> None:
    assets = AssetDirectory(folder)
    assert assets.names == ["index.html", "views/a.js"]
    page = assets.get("index.html")
    assert page.is_html and page.content_type == "text/html; charset=utf-8" and page.body == b"<!doctype html>"
    assert assets.get("views/a.js").content_type == "text/javascript; charset=utf-8"
    for path in ("../outside.js", "link.js", ".hidden.js", "notes.py", "/etc/passwd", "views/../index.html", ""):
        with pytest.raises(UserError) as err:
            assets.get(path)
        assert err.value.http_status == 404, path


def test_the_page_loads_only_files_that_ship_and_has_no_inline_script_or_handlers() -> None:
    html = (WEB_ROOT / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="dashboard/([^"]+)"', html):
        assert ref in SHIPPED.names, ref
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None  # every script comes from a file
    assert re.search(r"\son[a-z]+=", html) is None and "style=" not in html


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_module_import_resolves_to_a_shipped_file(script: str) -> None:
    text = (WEB_ROOT / script).read_text()
    for target in re.findall(r"""from\s+'(\.{1,2}/[^']+)'""", text):
        resolved = (Path("/") / script).parent.joinpath(target).resolve().as_posix().lstrip("/")
        assert resolved in SHIPPED.names, f"{script} imports {target}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_never_turn_data_into_html_or_code(script: str) -> None:
    text = (WEB_ROOT / script).read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in text, f"{script} uses {sink}"


def test_funcignore_deploys_the_dashboard_files() -> None:
    patterns = [p.strip() for p in (REPO / ".funcignore").read_text().splitlines() if p.strip()]
    for name in SHIPPED.names:
        rel = f"functions/web/{name}"
        parts = rel.split("/")
        for pattern in patterns:
            assert not fnmatch.fnmatch(rel, pattern.strip("/")), (rel, pattern)
            assert not any(fnmatch.fnmatch(part, pattern.strip("/")) for part in parts), (rel, pattern)
    assert "index.html" in SHIPPED.names and "app.js" in SHIPPED.names
