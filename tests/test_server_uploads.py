"""Uploads end to end: real multipart bodies streamed to disk by the server,
size limits, abandoned and hostile uploads, and consistency across kill -9."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from server_process import Http, ServerProcess, wait_until

BOUNDARY = "----satchelTestBoundary7MA4YWxk"


def multipart(fields: list[tuple[str, str]], file: tuple[str, bytes] | None = None) -> bytes:
    parts = []
    for name, value in fields:
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    if file is not None:
        filename, content = file
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def send_form(client: Http, method: str, path: str, body: bytes):
    return client.request(method, path, body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})


def staged_and_files(data_dir: Path) -> tuple[list[str], list[str]]:
    root = data_dir / "uploads"
    return sorted(p.name for p in (root / "staging").iterdir()), sorted(
        str(p.relative_to(root / "files")) for p in (root / "files").rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("uploads")
    server = ServerProcess(data_dir, extra=["--max-upload-bytes", "200000"])
    yield server, data_dir
    server.stop()


def test_upload_list_download_rename_overwrite_delete(small) -> None:
    server, data_dir = small
    client = Http(server)
    user = client.login("files@example.com")
    content = os.urandom(150_000)
    status, meta, _ = send_form(client, "POST", "/uploads",
                                multipart([("bucket", "photos"), ("filename", "my photo.jpg")], ("my photo.jpg", content)))
    assert status == 200, meta
    assert list(meta) == ["_id", "userId", "filename", "bucket", "createdAt", "updatedAt", "__v"]
    assert (meta["userId"], meta["filename"], meta["bucket"]) == (user, "my photo.jpg", "photos")

    assert client.request("GET", f"/uploads/{user}")[1] == {"records": [meta]}
    status, body, headers = Http(server).request("GET", f"/uploads/{user}/my%20photo.jpg")  # key only
    assert status == 200 and body == content and headers["content-type"] == "image/jpeg"
    assert headers["content-length"] == str(len(content))

    status, renamed, _ = send_form(client, "PATCH", "/uploads/my%20photo.jpg",
                                   multipart([("filename", "new.jpg"), ("bucket", "archived")]))
    assert status == 200 and renamed["record"]["filename"] == "new.jpg" and renamed["record"]["bucket"] == "archived"
    status, answer, _ = send_form(client, "PUT", "/uploads/new.jpg", multipart([("filename", "new.jpg")], ("new.jpg", b"tiny")))
    assert (status, answer) == (200, {"message": "file overwritten"})
    assert Http(server).request("GET", f"/uploads/{user}/new.jpg")[1] == b"tiny"

    status, deleted, _ = client.request("DELETE", "/uploads/new.jpg")
    assert status == 200 and deleted["deletedRecord"]["_id"] == meta["_id"]
    assert Http(server).request("GET", f"/uploads/{user}/new.jpg")[0] == 404
    assert staged_and_files(data_dir) == ([], [])


def test_too_large_malformed_and_keyless_uploads_leave_nothing(small) -> None:
    server, data_dir = small
    client = Http(server)
    client.login("limits@example.com")
    status, body, _ = send_form(client, "POST", "/uploads",
                                multipart([("bucket", "b"), ("filename", "big.bin")], ("big.bin", b"x" * 300_000)))
    assert status == 413 and "too large" in body["message"]
    client = Http(server)
    client.login("limits@example.com")
    broken = multipart([("bucket", "b"), ("filename", "cut.bin")], ("cut.bin", b"y" * 1000))[:-30]
    status, body, _ = send_form(client, "POST", "/uploads", broken)
    assert status == 400 and "multipart" in body["message"]
    status, _, _ = Http(server).request("POST", "/uploads", multipart([("bucket", "b")], ("k.bin", b"z")), key="wrong",
                                        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert status == 401
    status, body, _ = send_form(client, "POST", "/uploads",
                                multipart([("bucket", "b"), ("filename", "../../escape")], ("e.bin", b"e")))
    assert status == 400
    assert client.request("GET", "/uploads/..%2F..%2Fetc/passwd")[0] == 404
    assert client.request("GET", "/uploads/" + "a" * 24 + "/..%2F..%2Fsatchel.sqlite3")[0] == 404
    wait_until(lambda: staged_and_files(data_dir) == ([], []))


def test_a_client_that_leaves_mid_upload_leaves_no_staged_file(small) -> None:
    server, data_dir = small
    client = Http(server)
    client.login("leaver@example.com")
    body = multipart([("bucket", "b"), ("filename", "half.bin")], ("half.bin", b"h" * 150_000))
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall((f"POST /uploads HTTP/1.1\r\nHost: x\r\nAuthorization: key {server.api_key}\r\n"
                     f"Cookie: {client.cookie}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:80_000])
        wait_until(lambda: staged_and_files(data_dir)[0] != [])  # it is being staged
    wait_until(lambda: staged_and_files(data_dir) == ([], []))
    assert client.request("GET", f"/uploads/{client.login('leaver@example.com')}")[1] == {"records": []}


def test_kill_9_mid_upload_then_restart_is_consistent(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    client = Http(server)
    user = client.login("crash@example.com")
    assert send_form(client, "POST", "/uploads", multipart([("bucket", "b"), ("filename", "kept.bin")], ("kept.bin", b"k")))[0] == 200
    body = multipart([("bucket", "b"), ("filename", "lost.bin")], ("lost.bin", b"l" * 200_000))
    raw = socket.create_connection(("127.0.0.1", server.port))
    raw.sendall((f"POST /uploads HTTP/1.1\r\nHost: x\r\nAuthorization: key {server.api_key}\r\nCookie: {client.cookie}\r\n"
                 f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                + body[:100_000])
    wait_until(lambda: staged_and_files(tmp_path)[0] != [])
    server.kill()
    raw.close()
    assert staged_and_files(tmp_path)[0] != []  # the crash left a staged file
    restarted = ServerProcess(tmp_path)
    try:
        staged, files = staged_and_files(tmp_path)
        assert staged == [] and len(files) == 1
        reader = Http(restarted)
        reader.cookie = client.cookie
        records = reader.request("GET", f"/uploads/{user}")[1]["records"]
        assert [r["filename"] for r in records] == ["kept.bin"]
        assert Http(restarted).request("GET", f"/uploads/{user}/kept.bin")[1] == b"k"
    finally:
        restarted.stop()
