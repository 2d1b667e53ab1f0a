"""The page for people at `GET /`: plain HTML, CSS and ES modules from `serve/page/`, no build
step and nothing from another host (it works offline and behind a firewall). The page itself is
public; the API calls it makes carry the key the user gives it."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

PAGE_DIR = Path(__file__).with_name("page")
ASSET_PREFIX = "/page/"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The page's own policy: its scripts and styles from here only, its calls to this service only;
# the audio it plays is the user's file (a blob: URL).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


@cache
def _read(name: str) -> bytes:
    return (PAGE_DIR / name).read_bytes()


def index() -> tuple[bytes, str]:
    return _read("index.html"), _TYPES[".html"]


_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9]+)+")  # a bare file name: no folder, no dot first


def asset(name: str) -> tuple[bytes, str] | None:
    """A file of the page by its bare name (nothing outside `serve/page/` is read)."""
    if not _NAME.fullmatch(name):
        return None
    path = PAGE_DIR / name
    if path.suffix not in _TYPES or not path.is_file():
        return None
    return _read(name), _TYPES[path.suffix]
