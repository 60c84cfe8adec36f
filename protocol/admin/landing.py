"""The landing page: what a browser sees at ``/`` (issue 16 part 1).

A newcomer who opens the server's URL in a browser used to read Backpack's
``{"message":"Check your auth tokens"}``. ``LandingMount`` answers that one
request instead - ``GET`` (or ``HEAD``) of ``/`` whose ``Accept`` names
``text/html`` and that carries no ``Authorization`` header - with a small
page: what this server is, every mount of the table in order with the paths
it serves (each mount's ``paths``; nothing here names a protocol), and the
documents a mount offers (``sections``: the README's, from the static
files). Every other request of ``/`` - an API client, a browser that sends
the API key - goes on to Backpack and is answered byte for byte as before.

The page is rendered once, when the mount is built, from the mounts it is
given (the table it sits in): it is constant for a server's life.
"""

from __future__ import annotations

from html import escape
from typing import Any, Iterable

from ..environment import Environment
from ..http import HttpRequest, HttpResponse
from ..mounts import HttpOutcome, Mount
from ..operations import Action

__all__ = ["LandingMount", "render_landing"]

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1d232b}
h1{margin-bottom:0}h1+p{margin-top:.2rem;color:#555}table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{font-weight:600;width:9rem}code{font-size:13px}a{color:#0b5cad}ul.sections{columns:2}
"""


def _row(name: str, paths: tuple[tuple[str, str], ...]) -> str:
    cells = []
    for index, (path, what) in enumerate(paths):
        head = f'<th rowspan="{len(paths)}">{escape(name)}</th>' if index == 0 else ""
        cells.append(f"<tr>{head}<td><code>{escape(path)}</code></td><td>{escape(what)}</td></tr>")
    return "".join(cells)


def render_landing(mounts: Iterable[Mount]) -> bytes:
    """The landing page's HTML for a server that mounts ``mounts`` (in table order).

    A mount whose ``pages`` attribute is true serves pages for browsers
    (the static files: the console, the SDK, the demo): its paths are
    links under "Open". Every other mount's paths are endpoints, in the
    table. A mount's ``sections`` (``(href, title)`` pairs) are documents
    to read: the README's sections."""
    rows: list[str] = []
    pages: list[str] = []
    documents: list[str] = []
    for mount in mounts:
        if getattr(mount, "pages", False):
            pages.extend(f'<li><a href="{escape(path)}"><code>{escape(path)}</code></a> - {escape(what)}</li>'
                         for path, what in mount.paths)
        elif mount.paths:
            rows.append(_row(mount.name, mount.paths))
        sections: Any = getattr(mount, "sections", ())
        documents.extend(f'<li><a href="{escape(href)}">{escape(title)}</a></li>' for href, title in sections)
    opened = f"<h2>Open</h2><ul>{''.join(pages)}</ul>" if pages else ""
    readme = f'<h2>The README</h2><ul class="sections">{"".join(documents)}</ul>' if documents else ""
    page = (
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        f"<title>Satchel</title><link rel=icon href='data:,'><style>{_STYLE}</style>"
        "<h1>Satchel</h1><p>A self-hosted realtime backend: accounts, JSON collections, files, websockets with "
        "channels and inbox documents, spoken in five protocols over one data model.</p>"
        "<p>This page is for browsers. API clients calling <code>/</code> get the Backpack API's answer "
        "(send <code>Authorization: key &lt;KEY&gt;</code>).</p>"
        f"{opened}<h2>Mounted here</h2><table><tr><th>mount</th><th>path</th><th>what</th></tr>{''.join(rows)}"
        f"</table>{readme}</html>"
    )
    return page.encode()


def _wants_page(request: HttpRequest) -> bool:
    if request.path != "/" or request.method not in ("GET", "HEAD"):
        return False
    accept = request.header("accept")
    return accept is not None and "text/html" in accept and request.header("authorization") is None


class LandingMount(Mount):
    """``GET /`` from a browser without an API key: the landing page."""

    name = "landing"

    def __init__(self, mounts: Iterable[Mount]) -> None:
        self.body = render_landing(mounts)

    def claims_request(self, request: HttpRequest) -> bool:
        return request.path == "/" and _wants_page(request)

    def handle_request(self, request: HttpRequest, env: Environment, form: Any = None) -> Action[HttpOutcome]:
        headers = [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-cache"),
                   ("vary", "accept, authorization")]
        body = b"" if request.method == "HEAD" else self.body
        return HttpOutcome(HttpResponse(200, headers, body))
        yield  # an action is a generator
