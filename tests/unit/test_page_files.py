"""The page's files (serve/page/): served by bare name only, nothing from another host, nothing the
Content-Security-Policy would block (no inline script or style)."""

from __future__ import annotations

import re

from serve import page


def test_every_file_is_served_by_its_bare_name_and_nothing_else():
    names = sorted(p.name for p in page.PAGE_DIR.iterdir())
    assert {"index.html", "app.js", "api.js", "transcript.js", "live.js", "pcm-worklet.js", "page.css"} <= set(names)
    for name in names:
        found = page.asset(name)
        assert found is not None and found[0] == (page.PAGE_DIR / name).read_bytes(), name
    for bad in ("../page.py", "..%2Fpage.py", ".hidden.js", "page.py", "nothing.js", "sub/app.js", "", "app.js\x00",
                "app.js/", "..", "app .js"):  # fmt: skip
        assert page.asset(bad) is None, bad
    body, media_type = page.index()
    assert media_type.startswith("text/html") and b"<main>" in body


def test_nothing_comes_from_another_host_and_nothing_is_inline():
    for path in page.PAGE_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"https?://", text), f"{path.name} names another host"
    html = (page.PAGE_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline script: the CSP blocks it"
    assert " style=" not in html and "<style" not in html, "inline style: the CSP blocks it"
    assert all(src.startswith("/page/") for src in re.findall(r'(?:src|href)="([^"]+)"', html))
    assert "script-src 'self'" in page.CSP and "connect-src 'self'" in page.CSP
