"""The original Backpack SDK (baaspack/baas-sdk, src/*.js) against Satchel.

Its sources are not ours to ship, so this file replays every HTTP request
they make, shaped exactly as their ``sendRequest`` shapes it, and checks the
answer is one their code handles: ``response.ok`` and, where they call
``.json()``, a body that parses. Their request shape (notes from reading
src/apiClient.js, auth.js, db.js, storage.js):
- URL = hostname + path by plain concatenation; the README's hostname ends
  with "/", so every path arrives with a doubled slash (``//collections``);
- headers: ``authorization: key <KEY>``, ``credentials: 'include'``, and
  ``content-type: application/json`` only when a JSON body is sent (logout
  sends no body); a non-object body is wrapped as ``{data: body}``;
- FormData bodies go without a content type of their own (multipart).
Their ``ws()`` opens the API key as a URL and cannot reach any server; the
websocket actions they send are covered by tests/test_server_backpack.py.
"""

from __future__ import annotations

import json

import pytest

from server_process import Http, ServerProcess

EMAIL, PASSWORD = "original-sdk@example.com", "my_password123"


def sdk_request(client: Http, method: str, path: str, body: object = None) -> tuple[int, bytes]:
    """One request exactly as the original ``sendRequest`` builds it."""
    headers = {"authorization": f"key {client.server.api_key}"}
    payload = None
    if body is not None:
        if not isinstance(body, dict):
            body = {"data": body}
        headers["content-type"] = "application/json"
        payload = json.dumps(body).encode()
    if client.cookie:
        headers["cookie"] = client.cookie
    client.connection.request(method, "/" + path, payload, headers)  # hostname ends with '/'
    response = client.connection.getresponse()
    raw = response.read()
    cookie = response.getheader("set-cookie")
    if cookie:
        client.cookie = cookie.split(";")[0]
    return response.status, raw


def parses_as_json(raw: bytes) -> object:
    return json.loads(raw)  # what their `.json()` needs


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Http:
    return Http(server)


def test_auth_module(client: Http) -> None:
    status, raw = sdk_request(client, "POST", "/register", {"email": EMAIL, "password": PASSWORD})
    assert status == 200 and "id" in parses_as_json(raw)
    status, raw = sdk_request(client, "POST", "/login", {"email": EMAIL, "password": PASSWORD})
    assert status == 200 and "id" in parses_as_json(raw)


def test_db_module(client: Http) -> None:
    sdk_request(client, "POST", "/login", {"email": EMAIL, "password": PASSWORD})
    status, raw = sdk_request(client, "POST", "/collections", {"collectionName": "orig_notes"})
    assert status == 200 and parses_as_json(raw) == "orig_notes"
    status, raw = sdk_request(client, "POST", "/orig_notes", {"text": "from the original sdk"})
    record = parses_as_json(raw)
    assert status == 200 and record["text"] == "from the original sdk"
    status, raw = sdk_request(client, "GET", "/collections")
    assert status == 200 and "orig_notes" in parses_as_json(raw)
    status, raw = sdk_request(client, "GET", "/orig_notes")
    assert status == 200 and record in parses_as_json(raw)
    status, raw = sdk_request(client, "GET", f"/orig_notes/{record['_id']}")
    assert status == 200 and parses_as_json(raw) == record
    status, raw = sdk_request(client, "PATCH", f"/orig_notes/{record['_id']}", {"text": "patched"})
    assert status == 200 and parses_as_json(raw)["text"] == "patched"
    status, raw = sdk_request(client, "PUT", f"/orig_notes/{record['_id']}", {"other": 1})
    assert status == 200 and "text" not in parses_as_json(raw)
    status, raw = sdk_request(client, "DELETE", f"/orig_notes/{record['_id']}")
    assert status == 200 and parses_as_json(raw)["_id"] == record["_id"]
    # A non-object body is wrapped as {data: ...} by sendRequest.
    status, raw = sdk_request(client, "POST", "/orig_notes", "just a string")
    assert status == 200 and parses_as_json(raw)["data"] == "just a string"


def test_logout_without_a_body(client: Http) -> None:
    sdk_request(client, "POST", "/login", {"email": EMAIL, "password": PASSWORD})
    status, raw = sdk_request(client, "POST", "/logout")
    assert status == 200 and parses_as_json(raw) == {"message": "OK"}


def _form(parts: list[tuple[str, str, bytes | None]]) -> tuple[bytes, str]:
    """A FormData body as a browser encodes it: (name, value or filename, file bytes)."""
    boundary = "----WebKitFormBoundaryOriginalSdk"
    chunks = []
    for name, value, content in parts:
        if content is None:
            chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        else:
            chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{value}"\r\n'
                          f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def form_request(client: Http, method: str, path: str, parts: list) -> tuple[int, bytes]:
    body, content_type = _form(parts)
    headers = {"authorization": f"key {client.server.api_key}", "content-type": content_type}
    if client.cookie:
        headers["cookie"] = client.cookie
    client.connection.request(method, "/" + path, body, headers)
    response = client.connection.getresponse()
    return response.status, response.read()


def test_storage_module(client: Http) -> None:
    status, raw = sdk_request(client, "POST", "/login", {"email": EMAIL, "password": PASSWORD})
    user_id = parses_as_json(raw)["id"]
    # uploadFile appends bucket, filename, file - in that order.
    status, raw = form_request(client, "POST", "/uploads",
                               [("bucket", "photos", None), ("filename", "orig.jpg", None), ("file", "orig.jpg", b"jpeg")])
    assert status == 200 and parses_as_json(raw)["filename"] == "orig.jpg"
    status, raw = sdk_request(client, "GET", f"/uploads/{user_id}")
    assert status == 200 and parses_as_json(raw)["records"][0]["bucket"] == "photos"
    status, raw = sdk_request(client, "GET", f"/uploads/{user_id}/orig.jpg")  # getFile: the raw response
    assert status == 200 and raw == b"jpeg"
    status, raw = form_request(client, "PATCH", "/uploads/orig.jpg", [("bucket", "archive", None), ("filename", "moved.jpg", None)])
    assert status == 200 and parses_as_json(raw)["record"]["filename"] == "moved.jpg"
    status, raw = form_request(client, "PUT", "/uploads/moved.jpg", [("filename", "moved.jpg", None), ("file", "moved.jpg", b"new")])
    assert status == 200 and parses_as_json(raw) == {"message": "file overwritten"}
    status, raw = sdk_request(client, "DELETE", "/uploads/moved.jpg")
    assert status == 200 and parses_as_json(raw)["deletedRecord"]["filename"] == "moved.jpg"
