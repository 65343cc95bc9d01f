"""The console's shipped files: what the CSP needs of them, and the vendored library.

Cheap guards that need no browser (tests/browser drives the real thing): the HTML has
no inline script, style or handler; our modules build the page without innerHTML and
name no other origin; every module they import exists; the vendored uPlot is the file
its VERSION note describes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from services.console import CONSOLE_HEADERS, STATIC, console_router

OWN_FILES = sorted(
    p for p in STATIC.rglob("*") if p.is_file() and "vendor" not in p.parts and p.suffix != ".png"
)
MODULES = [p for p in OWN_FILES if p.suffix == ".js"]
UPLOT = STATIC / "vendor" / "uplot"


def test_the_page_has_no_inline_script_style_or_handler() -> None:
    html = (STATIC / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
    assert scripts
    assert all(body.strip() == "" for body in scripts)
    assert all('src="/console/' in tag for tag in re.findall(r"<script\b[^>]*>", html))
    assert "<style" not in html
    assert not re.search(r"\sstyle\s*=", html)
    assert not re.search(r"\son[a-z]+\s*=", html)


@pytest.mark.parametrize("path", OWN_FILES, ids=lambda p: str(p.relative_to(STATIC)))
def test_own_files_name_no_other_origin(path: Path) -> None:
    text = path.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name only
    assert not re.search(r"\b(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), (
        "the CSP allows this origin only"
    )


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_modules_build_the_page_without_html_strings(module: Path) -> None:
    code = module.read_text()
    assert not re.search(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write", code)
    assert not re.search(r"\beval\(|new Function\(", code)
    for target in re.findall(r'from "(\.[^"]+)"', code):
        assert (module.parent / target).resolve().is_file(), f"{module.name} imports {target}"


def test_the_vendored_uplot_is_the_one_its_note_names() -> None:
    note = (UPLOT / "VERSION").read_text()
    assert note.startswith("uPlot 1.6.32 (MIT")
    for name in ("uPlot.esm.js", "uPlot.min.css"):
        recorded = re.search(rf"sha256 of {re.escape(name)}\s+([0-9a-f]{{64}})", note)
        assert recorded, name
        assert hashlib.sha256((UPLOT / name).read_bytes()).hexdigest() == recorded.group(1)
    assert "MIT License" in (UPLOT / "LICENSE").read_text()


def test_every_console_response_carries_the_strict_csp() -> None:
    with TestClient(Litestar(route_handlers=[console_router()])) as client:
        for path in ("/console/", "/console", "/console/js/main.js", "/console/console.css"):
            answer = client.get(path)
            assert answer.status_code == 200, path
            for name, value in CONSOLE_HEADERS.items():
                assert answer.headers[name] == value, (path, name)
        assert "javascript" in client.get("/console/js/main.js").headers["content-type"]
    csp = CONSOLE_HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp


def test_a_file_revalidated_with_its_etag_is_a_304_without_a_body() -> None:
    with TestClient(Litestar(route_handlers=[console_router()])) as client:
        for path in ("/console/", "/console/js/main.js"):
            first = client.get(path)
            etag = first.headers["etag"]
            for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
                again = client.get(path, headers={"If-None-Match": sent})
                assert again.status_code == 304, (path, sent)
                assert again.content == b""
                assert again.headers["etag"] == etag
                assert "content-type" not in again.headers
                for name, value in CONSOLE_HEADERS.items():
                    assert again.headers[name] == value, (path, name)
            changed = client.get(path, headers={"If-None-Match": '"other"'})
            assert changed.status_code == 200
            assert changed.content == first.content
        missing = client.get("/console/nothing.js", headers={"If-None-Match": "*"})
        assert missing.status_code == 404
