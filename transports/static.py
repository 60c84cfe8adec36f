"""Files the server hands to browsers without an API key: the SDK and the demo.

``/sdk.js`` is a classic script that defines the global ``createSdk``;
``/sdk.mjs`` is the same code as an ES module. Both come from one source,
``static/sdk.js``, wrapped at import time. ``/backend/Backend.js`` (global
``Backend``) and ``/backend/Backend.mjs`` are the inbox documents' client,
``static/Backend.js``. ``/demo/...`` serves the demo app. ``/_/`` is the
admin console (``static/console/``: plain HTML, CSS and JavaScript modules,
no build step, nothing fetched from another origin) and ``/_/readme`` the
README as a page, whose sections the landing page lists (``sections``).
Paths are looked up in a fixed table built at start-up, so no request path
ever reaches the file system.

``STATIC_FILES`` is a mount (``satchel.protocol.mounts``) that servers put
first in their mount table: it claims exactly these paths. It lives here,
not under ``protocol/``, because it reads its files from the package.
"""

from __future__ import annotations

import html
import re
from importlib import resources
from pathlib import Path

from typing import Any

from satchel.protocol.environment import Environment
from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.protocol.mounts import HttpOutcome, Mount
from satchel.protocol.operations import Action

__all__ = ["static_response", "StaticFiles", "STATIC_FILES"]

_JS = "text/javascript; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_CSS = "text/css; charset=utf-8"
_CONSOLE_TYPES = {".html": _HTML, ".js": _JS, ".css": _CSS}
# The console's page may run only its own scripts and talk only to its own origin.
_CONSOLE_CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; "
                "style-src 'self'; script-src 'self'; frame-ancestors 'none'")


def _read(name: str) -> str:
    return resources.files("satchel.transports").joinpath("static", name).read_text("utf-8")


def _build() -> dict[str, tuple[str, bytes]]:
    sdk = _read("sdk.js")
    assets = {
        "/sdk.js": (_JS, f"(function () {{\n{sdk}\nwindow.createSdk = createSdk;\n}})();\n".encode()),
        "/sdk.mjs": (_JS, f"{sdk}\nexport {{ createSdk }};\nexport default createSdk;\n".encode()),
    }
    # Claimed before the inbox mount's /backend/documents, by this mount being first.
    backend = _read("Backend.js")
    assets["/backend/Backend.js"] = (_JS, backend.encode())
    assets["/backend/Backend.mjs"] = (_JS, f"{backend}\nBackend.scriptUrl = import.meta.url;\nexport {{ Backend }};\nexport default Backend;\n".encode())
    demo = resources.files("satchel.transports").joinpath("static", "demo")
    for entry in demo.iterdir():
        if entry.name.endswith(".html"):
            assets[f"/demo/{entry.name.removesuffix('.html')}"] = (_HTML, entry.read_bytes())
    console = resources.files("satchel.transports").joinpath("static", "console")
    for entry in console.iterdir():
        suffix = entry.name[entry.name.rfind("."):]
        if suffix in _CONSOLE_TYPES:
            # index.html is the console itself, at /_/ (normalized: /_).
            path = "/_" if entry.name == "index.html" else f"/_/{entry.name}"
            assets[path] = (_CONSOLE_TYPES[suffix], entry.read_bytes())
    readme, sections = _readme()
    if readme:
        assets["/_/readme"] = (_HTML, readme)
    return assets, sections


def _readme_text() -> str:
    """The README: the source checkout's (an editable install, ``make serve``),
    else the one in the installed distribution's metadata."""
    source = Path(__file__).resolve().parent.parent / "README.md"
    try:
        return source.read_text("utf-8")
    except OSError:
        pass
    try:
        from importlib import metadata

        return metadata.metadata("satchel").get_payload() or ""  # type: ignore[attr-defined]
    except Exception:
        return ""


def _slug(title: str) -> str:
    # GitHub's anchors: lower case, punctuation dropped, spaces as hyphens.
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"!\[([^\]]*)\]\([^)\s]*\)", r"(\1)", text)  # an image of the repository: its alt text
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', text)


def _readme() -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """The README as a small HTML page (headings anchored, code blocks kept
    as they are, paragraphs as text), and its sections (level 2) as
    ``(href, title)``. A deliberately small Markdown subset: enough to read
    it in a browser that has the server and nothing else."""
    text = _readme_text()
    if not text:
        return b"", ()
    out: list[str] = []
    sections: list[tuple[str, str]] = []
    paragraph: list[str] = []
    code: list[str] | None = None

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()

    for line in text.splitlines():
        if code is not None:
            if line.startswith("```"):
                out.append(f"<pre>{html.escape(chr(10).join(code))}</pre>")
                code = None
            else:
                code.append(line)
            continue
        if line.startswith("```"):
            flush()
            code = []
        elif line.startswith("#"):
            flush()
            level = min(len(line) - len(line.lstrip("#")), 4)
            title = line.lstrip("#").strip()
            slug = _slug(title)
            out.append(f'<h{level} id="{html.escape(slug)}">{_inline(title)}</h{level}>')
            if level == 2:
                sections.append((f"/_/readme#{slug}", title))
        elif not line.strip():
            flush()
        else:
            paragraph.append(line.strip())
    flush()
    page = ("<!doctype html><html lang=en><meta charset=utf-8><title>Satchel - README</title>"
            "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}"
            "pre{background:#f4f5f7;padding:.6rem;overflow:auto}code{font-size:13px}</style>"
            f'<p><a href="/">Satchel</a> &middot; <a href="/_/">console</a></p>{"".join(out)}</html>')
    return page.encode(), tuple(sections)


_ASSETS, _SECTIONS = _build()


def static_response(request: HttpRequest) -> HttpResponse | None:
    """The response for a static asset, or ``None`` if the path is not one."""
    if request.method not in ("GET", "HEAD"):
        return None
    asset = _ASSETS.get(request.path)
    if asset is None:
        return None
    content_type, body = asset
    # Any origin may load the SDK (an ES module import from another origin needs CORS).
    if request.path == "/_" or request.path.startswith("/_/"):
        # The console and its README: same-origin only, never framed.
        headers = [("content-type", content_type), ("cache-control", "no-cache"),
                   ("content-security-policy", _CONSOLE_CSP), ("x-content-type-options", "nosniff"),
                   ("referrer-policy", "no-referrer")]
        return HttpResponse(200, headers, body)
    headers = [("content-type", content_type), ("cache-control", "no-cache"), ("access-control-allow-origin", "*")]
    return HttpResponse(200, headers, body)


class StaticFiles(Mount):
    """The SDK and the demo, served without an API key."""

    name = "static"
    #: Pages for browsers: the landing page links them (``admin.landing``).
    pages = True
    paths = (("/_/", "the admin console"), ("/sdk.js", "the Backpack browser SDK (createSdk)"),
             ("/backend/Backend.js", "the inbox documents' browser client"), ("/demo/chat", "the demo chat"),
             ("/demo/websocket-tester", "the Directus websocket tester"), ("/_/readme", "the README"))
    #: The README's sections, for the landing page.
    sections = _SECTIONS

    def claims_request(self, request: HttpRequest) -> bool:
        return request.method in ("GET", "HEAD") and request.path in _ASSETS

    def handle_request(self, request: HttpRequest, env: Environment, form: Any = None) -> Action[HttpOutcome]:
        response = static_response(request)
        assert response is not None  # claims_request said it is an asset
        return HttpOutcome(response)
        yield  # unreachable: an action is a generator


#: The one ``StaticFiles`` mount a server needs.
STATIC_FILES = StaticFiles()
