"""Files the server hands to browsers without an API key: the SDK and the demo.

``/sdk.js`` is a classic script that defines the global ``createSdk``;
``/sdk.mjs`` is the same code as an ES module. Both come from one source,
``static/sdk.js``, wrapped at import time. ``/backend/Backend.js`` (global
``Backend``) and ``/backend/Backend.mjs`` are the inbox documents' client,
``static/Backend.js``. ``/demo/...`` serves the demo app.
Paths are looked up in a fixed table built at start-up, so no request path
ever reaches the file system.

``STATIC_FILES`` is a mount (``satchel.protocol.mounts``) that servers put
first in their mount table: it claims exactly these paths. It lives here,
not under ``protocol/``, because it reads its files from the package.
"""

from __future__ import annotations

from importlib import resources

from typing import Any

from satchel.protocol.environment import Environment
from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.protocol.mounts import HttpOutcome, Mount
from satchel.protocol.operations import Action

__all__ = ["static_response", "StaticFiles", "STATIC_FILES"]

_JS = "text/javascript; charset=utf-8"
_HTML = "text/html; charset=utf-8"


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
    return assets


_ASSETS = _build()


def static_response(request: HttpRequest) -> HttpResponse | None:
    """The response for a static asset, or ``None`` if the path is not one."""
    if request.method not in ("GET", "HEAD"):
        return None
    asset = _ASSETS.get(request.path)
    if asset is None:
        return None
    content_type, body = asset
    # Any origin may load the SDK (an ES module import from another origin needs CORS).
    headers = [("content-type", content_type), ("cache-control", "no-cache"), ("access-control-allow-origin", "*")]
    return HttpResponse(200, headers, body)


class StaticFiles(Mount):
    """The SDK and the demo, served without an API key."""

    name = "static"

    def claims_request(self, request: HttpRequest) -> bool:
        return request.method in ("GET", "HEAD") and request.path in _ASSETS

    def handle_request(self, request: HttpRequest, env: Environment, form: Any = None) -> Action[HttpOutcome]:
        response = static_response(request)
        assert response is not None  # claims_request said it is an asset
        return HttpOutcome(response)
        yield  # unreachable: an action is a generator


#: The one ``StaticFiles`` mount a server needs.
STATIC_FILES = StaticFiles()
