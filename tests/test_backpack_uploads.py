"""Backpack's file storage through the pure core (seed 000 "storage")."""

from __future__ import annotations

import pytest

from core_harness import Core
from satchel.protocol.backpack.uploads import UploadForm, content_type_for


@pytest.fixture
def core() -> Core:
    return Core()


def upload(core: Core, cookie: str, filename: str = "my_photo.jpg", bucket: str = "photos", content: bytes = b"JPEG"):
    form = UploadForm({"filename": filename, "bucket": bucket}, core.stage(content))
    return core.http("POST", "/uploads", cookie=cookie, form=form)


def test_upload_list_download_rename_overwrite_delete(core: Core) -> None:
    user, cookie = core.user("sally@example.com")
    created = upload(core, cookie)
    meta = created.json
    assert created.status == 200
    assert list(meta) == ["_id", "userId", "filename", "bucket", "createdAt", "updatedAt", "__v"]
    assert (meta["userId"], meta["filename"], meta["bucket"]) == (user, "my_photo.jpg", "photos")
    assert core.files[(user, meta["_id"])] == b"JPEG"

    listed = core.http("GET", f"/uploads/{user}", cookie=cookie)
    assert listed.json == {"records": [meta]}

    got = core.http("GET", f"/uploads/{user}/my_photo.jpg")  # the API key is enough
    assert got.status == 200 and got.header("content-type") == "image/jpeg"
    assert (got.file.owner, got.file.file_id) == (user, meta["_id"])
    assert got.header("x-content-type-options") == "nosniff"

    renamed = core.http("PATCH", "/uploads/my_photo.jpg", cookie=cookie,
                        form=UploadForm({"filename": "new_photo_name.jpg", "bucket": "archived_photos"}))
    assert renamed.status == 200
    record = renamed.json["record"]
    assert (record["filename"], record["bucket"], record["_id"]) == ("new_photo_name.jpg", "archived_photos", meta["_id"])
    assert core.http("GET", f"/uploads/{user}/my_photo.jpg").status == 404
    assert core.files[(user, meta["_id"])] == b"JPEG"  # renaming never moves bytes

    overwritten = core.http("PUT", "/uploads/new_photo_name.jpg", cookie=cookie,
                            form=UploadForm({"filename": "new_photo_name.jpg"}, core.stage(b"PNG!")))
    assert overwritten.json == {"message": "file overwritten"}
    assert core.files[(user, meta["_id"])] == b"PNG!"
    assert core.http("GET", f"/uploads/{user}", cookie=cookie).json["records"] == [record]

    deleted = core.http("DELETE", "/uploads/new_photo_name.jpg", cookie=cookie)
    assert deleted.json == {"deletedRecord": record}
    assert core.files == {} and core.http("GET", f"/uploads/{user}", cookie=cookie).json == {"records": []}


def test_upload_errors(core: Core) -> None:
    _, cookie = core.user("sally@example.com")
    assert core.http("POST", "/uploads", cookie=cookie, form=UploadForm({"filename": "a.txt", "bucket": "b"})).json == {
        "message": "no file uploaded"}
    assert upload(core, cookie, filename="").status == 400
    assert upload(core, cookie, bucket="").status == 400
    assert upload(core, cookie, filename="../../etc/passwd").status == 400
    assert upload(core, cookie).status == 200
    again = upload(core, cookie)
    assert (again.status, again.json) == (400, {"message": "file already exists"})
    for method in ("PATCH", "PUT", "DELETE"):
        missing = core.http(method, "/uploads/nope.jpg", cookie=cookie, form=UploadForm({}, core.stage(b"x")))
        assert (missing.status, missing.json) == (404, {"message": "file does not exist"})
    upload(core, cookie, filename="other.jpg")
    clash = core.http("PATCH", "/uploads/other.jpg", cookie=cookie, form=UploadForm({"filename": "my_photo.jpg"}))
    assert (clash.status, clash.json) == (400, {"message": "file already exists"})


def test_uploads_need_a_session_but_downloads_only_the_key(core: Core) -> None:
    user, cookie = core.user("sally@example.com")
    upload(core, cookie)
    for method, target in [("POST", "/uploads"), ("GET", f"/uploads/{user}"), ("PATCH", "/uploads/my_photo.jpg"),
                           ("PUT", "/uploads/my_photo.jpg"), ("DELETE", "/uploads/my_photo.jpg")]:
        assert core.http(method, target).status == 403, (method, target)
    assert core.http("GET", f"/uploads/{user}/my_photo.jpg").status == 200
    assert core.http("GET", f"/uploads/{user}/my_photo.jpg", key="wrong").status == 401


def test_users_only_change_their_own_files_and_uploads_stay_hidden(core: Core) -> None:
    sally, sally_cookie = core.user("sally@example.com")
    _, george_cookie = core.user("george@example.com")
    upload(core, sally_cookie)
    assert core.http("DELETE", "/uploads/my_photo.jpg", cookie=george_cookie).status == 404
    assert core.http("GET", f"/uploads/{sally}", cookie=george_cookie).json["records"][0]["filename"] == "my_photo.jpg"
    assert core.http("GET", "/collections").json == []
    watcher = core.connect(george_cookie)
    core.take(watcher)
    upload(core, sally_cookie, filename="quiet.jpg")
    assert core.take(watcher) == []  # file metadata is not broadcast


@pytest.mark.parametrize(
    "filename, content_type, inline",
    [("a.jpg", "image/jpeg", True), ("a.PNG", "image/png", True), ("page.html", "application/octet-stream", False),
     ("x.svg", "application/octet-stream", False), ("noext", "application/octet-stream", False),
     ("notes.txt", "text/plain; charset=utf-8", True)],
)
def test_content_types_never_let_an_upload_run_as_the_api(filename: str, content_type: str, inline: bool) -> None:
    assert content_type_for(filename) == (content_type, inline)
