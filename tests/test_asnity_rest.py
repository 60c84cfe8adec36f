"""Asnity's REST API through the switchboard (asnity.md sections 1, 3, 4):
the envelope, Nest's errors, validation, and every route's answers."""

from __future__ import annotations

import re

import pytest
from asnity_harness import START_MS, Asnity, World, world
from satchel.protocol.asnity.rest import ROUTES

UNAUTHORIZED = {"statusCode": 401, "message": "Unauthorized"}
OBJECT_ID = "5e9f2fc00fb8899611d642a4"
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


@pytest.fixture
def w() -> World:
    return world()


def error(status: int, message, error_text: str) -> dict:
    return {"statusCode": status, "message": message, "error": error_text}


def bad(message) -> dict:
    return error(400, message, "Bad Request")


# -- routing, envelope, errors ------------------------------------------------------


@pytest.mark.parametrize("route", [r for r in ROUTES if r.guarded], ids=lambda r: f"{r.method} /{'/'.join(r.pattern)}")
def test_every_guarded_route_answers_401_without_a_token(route) -> None:
    asnity = Asnity()
    path = "/" + "/".join(OBJECT_ID if part.startswith(":") else part for part in route.pattern)
    response = asnity.http(route.method, path, {})
    assert (response.status, response.json) == (401, UNAUTHORIZED)


@pytest.mark.parametrize(
    "method, target",
    [("GET", "/api/nothing"), ("PUT", "/api/community"), ("GET", "/api/community"), ("GET", "/api/users/x?y=1"), ("GET", "/api")],
)
def test_an_unknown_route_is_nest_404(method: str, target: str) -> None:
    response = Asnity().http(method, target)
    assert (response.status, response.json) == (404, error(404, f"Cannot {method} {target}", "Not Found"))


def test_a_malformed_json_body_is_400_before_anything_else() -> None:
    response = Asnity().http("POST", "/api/community", raw=b'{"name": ')
    assert response.status == 400 and response.json["error"] == "Bad Request"
    assert isinstance(response.json["message"], str)
    assert Asnity().http("POST", "/api/user/auth/signup", raw=b'"just a string"').status == 400


def test_a_body_of_another_type_carries_no_fields(w: World) -> None:
    response = w.asnity.http("POST", "/api/community", raw=b"name=xx", token=w.alice.token, headers=[("content-type", "text/plain")])
    assert response.json == bad(["name must be longer than or equal to 2 characters", "name must be a string", "name should not be empty"])
    form = w.asnity.http(
        "POST", "/api/community", raw=b"name=formed", token=w.alice.token,
        headers=[("content-type", "application/x-www-form-urlencoded")],
    )
    assert form.status == 201 and form.result["name"] == "formed"


def test_posts_answer_201_and_other_methods_200_with_status_code_200_in_the_body(w: World) -> None:
    asnity = w.asnity
    post = asnity.http("POST", f"/api/channels/{w.public}/chat", {"type": "TEXT", "content": "x"}, token=w.bob.token)
    get = asnity.http("GET", "/api/communities", token=w.bob.token)
    patch = asnity.http("PATCH", f"/api/channels/{w.public}/lastRead", {"community_id": w.community}, token=w.bob.token)
    for response, status in ((post, 201), (get, 200), (patch, 200)):
        assert response.status == status and response.json["statusCode"] == 200 and isinstance(response.json["result"], dict)


def test_path_parameters_win_over_the_query(w: World) -> None:
    # Bob is not in the private channel; naming it in the query changes nothing.
    response = w.asnity.http("GET", f"/api/channels/{w.public}/chat?prev=-1&channel_id={w.private}", token=w.bob.token)
    assert response.status == 200 and response.result["chat"][0]["id"] == 0


# -- validation (class-validator's messages, in Nest's order) ---------------------


VALIDATION = [
    ("POST", "/api/community", {}, ["name must be longer than or equal to 2 characters", "name must be a string", "name should not be empty"]),
    ("POST", "/api/community", {"name": "x" * 21}, ["name must be shorter than or equal to 20 characters"]),
    ("POST", "/api/community", {"name": "ok", "description": 5}, ["description must be a string"]),
    ("POST", "/api/communities/{community}/users", {}, [
        "users should not be empty", "users must be an array", "users should not be empty",
    ]),
    ("POST", "/api/communities/{community}/users", {"users": []}, ["users should not be empty"]),
    ("POST", "/api/communities/{community}/users", {"users": ["nope"]}, ["each value in users must be a mongodb id"]),
    ("POST", "/api/communities/not-an-id/users", {"users": [OBJECT_ID]}, ["community_id must be a mongodb id"]),
    ("PATCH", "/api/communities/{community}/settings", {"managerId": "x"}, ["managerId must be a mongodb id"]),
    ("POST", "/api/channel", {}, [
        "communityId should not be empty", "communityId must be a mongodb id",
        "name should not be empty", "name must be longer than or equal to 2 characters", "name must be a string",
        "type should not be empty", "type must be a string",
        "isPrivate should not be empty", "isPrivate must be a boolean value",
    ]),
    # No coercion: "true" is not a boolean.
    ("POST", "/api/channel", {"communityId": "{community}", "name": "ok", "type": "Channel", "isPrivate": "true"}, [
        "isPrivate must be a boolean value",
    ]),
    ("PATCH", "/api/channels/{public}/settings", {"isPrivate": "false"}, ["isPrivate must be a boolean value"]),
    ("PATCH", "/api/channels/{public}/settings", {"name": "x"}, ["name must be longer than or equal to 2 characters"]),
    ("POST", "/api/channels/{public}/users", {}, [
        "community_id should not be empty", "community_id must be a mongodb id",
        "users should not be empty", "users must be an array",
    ]),
    ("POST", "/api/channels/{public}/users", {"community_id": "{community}", "users": "{bob}"}, ["users must be an array"]),
    ("POST", "/api/channels/{public}", {}, ["community_id should not be empty", "community_id must be a mongodb id"]),
    ("PATCH", "/api/channels/{public}/lastRead", {"community_id": "x"}, ["community_id must be a mongodb id"]),
    ("POST", "/api/channels/{public}/chat", {}, [
        "type should not be empty", "type must be one of the following values: TEXT, IMAGE",
        "content should not be empty", "content must be a string",
    ]),
    ("POST", "/api/channels/{public}/chat", {"type": "SYSTEM", "content": "fake notice"}, [
        "type must be one of the following values: TEXT, IMAGE",
    ]),
    ("POST", "/api/channels/{public}/chat", {"type": "TEXT", "content": ""}, ["content should not be empty"]),
    ("PATCH", "/api/channels/{public}/chats/0", {"content": 7}, ["content must be a string"]),
    ("POST", "/api/channels/nope/chat", {"type": "TEXT", "content": "x"}, ["channel_id must be a mongodb id"]),
    ("POST", "/api/user/following/nope", {}, ["followId must be a mongodb id"]),
    ("PATCH", "/api/user/settings", {"nickname": "n", "status": "BUSY"}, [
        "nickname must be longer than or equal to 2 characters", "status must be one of the following values: ONLINE, OFFLINE, AFK",
    ]),
    ("GET", "/api/users", None, ["search should not be empty", "search must be a string"]),
    ("GET", "/api/users?search=a&search=b", None, ["search must be a string"]),
]


@pytest.mark.parametrize("method, path, body, messages", VALIDATION)
def test_validation_failures_are_400_with_every_message(w: World, method: str, path: str, body, messages) -> None:
    ids = {"community": w.community, "public": w.public, "bob": w.bob.id}
    fill = lambda text: text.format(**ids)
    if isinstance(body, dict):
        body = {key: fill(value) if isinstance(value, str) else value for key, value in body.items()}
    response = w.asnity.http(method, fill(path), body, token=w.alice.token)
    assert (response.status, response.json) == (400, bad(messages))


# -- communities --------------------------------------------------------------------


def test_create_community_answers_community_basic_with_no_channels(w: World) -> None:
    response = w.asnity.http("POST", "/api/community", {"name": "new one", "users": [w.bob.id]}, token=w.bob.token)
    assert response.status == 201
    result = response.result
    assert list(result) == ["_id", "name", "managerId", "profileUrl", "description", "channels", "createdAt", "updatedAt"]
    assert (result["name"], result["managerId"], result["channels"]) == ("new one", w.bob.id, [])
    assert (result["description"], result["profileUrl"]) == ("default community description", "default community profile")
    # The body's users are ignored: Alice is not in it.
    alice_sees = w.asnity.http("GET", "/api/communities", token=w.alice.token).result["communities"]
    assert [c["_id"] for c in alice_sees] == [w.community]


def test_list_communities_with_their_joined_channels_in_creation_order(w: World) -> None:
    asnity = w.asnity
    asnity.clock.advance(1000)
    later = asnity.channel(w.alice, w.community, "later")
    asnity.clock.advance(1000)
    second = asnity.community(w.bob, "second")
    bob = asnity.http("GET", "/api/communities", token=w.bob.token).result["communities"]
    assert [c["_id"] for c in bob] == [w.community, second]
    # Bob is in the public channels only; the private one is Alice's.
    assert [c["_id"] for c in bob[0]["channels"]] == [w.public, later]
    alice = asnity.http("GET", "/api/communities", token=w.alice.token).result["communities"]
    assert [c["_id"] for c in alice[0]["channels"]] == [w.public, w.private, later]
    channel = bob[0]["channels"][0]
    assert list(channel) == [
        "_id", "name", "communityId", "managerId", "description", "type", "isPrivate", "users", "createdAt", "updatedAt", "existUnreadChat",
    ]
    assert "users" not in bob[0]


def test_exist_unread_chat_follows_last_read_and_the_last_chat(w: World) -> None:
    asnity = w.asnity

    def unread() -> bool:
        listed = asnity.http("GET", "/api/communities", token=w.bob.token).result["communities"][0]["channels"]
        return next(c for c in listed if c["_id"] == w.public)["existUnreadChat"]

    asnity.clock.advance(1000)
    asnity.http("PATCH", f"/api/channels/{w.public}/lastRead", {"community_id": w.community}, token=w.bob.token)
    assert unread() is False
    asnity.clock.advance(1000)
    asnity.post_chat(w.alice, w.public)
    assert unread() is True


def test_add_users_is_the_managers_and_checks_every_invitee(w: World) -> None:
    asnity = w.asnity
    dave = asnity.account("dave@example.com")
    path = f"/api/communities/{w.community}/users"
    assert asnity.http("POST", path, {"users": [dave.id]}, token=w.bob.token).json == bad("사용자의 커뮤니티 수정 권한이 없습니다.")
    assert asnity.http("POST", path, {"users": [dave.id]}, token=w.carol.token).json == bad("해당하는 커뮤니티의 _id가 올바르지 않습니다.")
    assert asnity.http("POST", path, {"users": [OBJECT_ID]}, token=w.alice.token).json == bad(
        f"커뮤니티에 추가를 요청한 사용자 _id({OBJECT_ID})가 올바르지 않습니다."
    )
    assert asnity.http("POST", path, {"users": [w.bob.id]}, token=w.alice.token).json == bad("이미 커뮤니티에 추가된 사용자 입니다.")
    added = asnity.http("POST", path, {"users": [dave.id, w.carol.id]}, token=w.alice.token)
    assert added.status == 201 and added.result == {"message": "커뮤니티 사용자 추가 완료"}
    carol = asnity.http("GET", "/api/communities", token=w.carol.token).result["communities"]
    assert [c["_id"] for c in carol] == [w.community]
    assert [c["_id"] for c in carol[0]["channels"]] == [w.public]  # public channels only


def test_community_users_are_for_members(w: World) -> None:
    path = f"/api/communities/{w.community}/users"
    users = w.asnity.http("GET", path, token=w.bob.token).result["users"]
    assert [(u["_id"], u["nickname"]) for u in users] == [(w.alice.id, "alice"), (w.bob.id, "bob")]
    assert w.asnity.http("GET", path, token=w.carol.token).json == bad("해당하는 커뮤니티의 _id가 올바르지 않습니다.")


def test_delete_community_is_the_managers_and_only_once(w: World) -> None:
    asnity = w.asnity
    path = f"/api/communities/{w.community}"
    assert asnity.http("DELETE", path, token=w.bob.token).json == bad("사용자의 커뮤니티 수정 권한이 없습니다.")
    response = asnity.http("DELETE", path, token=w.alice.token)
    assert (response.status, response.result) == (200, {"message": "커뮤니티 삭제 성공"})
    assert asnity.http("DELETE", path, token=w.alice.token).json == bad("이미 삭제된 커뮤니티입니다.")
    for account in (w.alice, w.bob):
        assert asnity.http("GET", "/api/communities", token=account.token).result == {"communities": []}


def test_leave_community(w: World) -> None:
    asnity = w.asnity
    path = f"/api/communities/{w.community}/me"
    assert asnity.http("DELETE", path, token=w.alice.token).json == bad("매니저는 커뮤니티에서 탈퇴할 수 없습니다. 매니저 위임하세요.")
    assert asnity.http("DELETE", path, token=w.bob.token).result == {"message": "사용자 커뮤니티 탈퇴 성공"}
    assert asnity.http("GET", "/api/communities", token=w.bob.token).result == {"communities": []}
    channel = asnity.http("GET", f"/api/channels/{w.public}", token=w.alice.token).result
    assert [u["_id"] for u in channel["users"]] == [w.alice.id]
    assert asnity.http("DELETE", path, token=w.bob.token).json == bad("해당하는 커뮤니티의 _id가 올바르지 않습니다.")
    # Alone now, the manager's leaving deletes the community.
    assert asnity.http("DELETE", path, token=w.alice.token).status == 200
    assert asnity.http("GET", f"/api/channels/{w.public}", token=w.alice.token).json == bad("존재하지 않는 채널입니다.")


def test_community_settings_and_delegation(w: World) -> None:
    asnity = w.asnity
    path = f"/api/communities/{w.community}/settings"
    assert asnity.http("PATCH", path, {"name": "x y"}, token=w.bob.token).json == bad("사용자의 커뮤니티 수정 권한이 없습니다.")
    assert asnity.http("PATCH", path, {"managerId": w.carol.id}, token=w.alice.token).json == bad("커뮤니티에 존재하지 않는 유저입니다.")
    response = asnity.http("PATCH", path, {"name": "renamed", "managerId": w.bob.id, "nope": 1}, token=w.alice.token)
    assert (response.status, response.result) == (200, {"message": "커뮤니티 정보 수정 완료"})
    listed = asnity.http("GET", "/api/communities", token=w.bob.token).result["communities"][0]
    assert (listed["name"], listed["managerId"]) == ("renamed", w.bob.id)
    assert asnity.http("PATCH", path, {"name": "again"}, token=w.alice.token).status == 400
    assert asnity.http("PATCH", path, {"name": "again"}, token=w.bob.token).status == 200


# -- channels -----------------------------------------------------------------------


def test_create_channel_answers_channel_basic_without_users_and_the_bot_announces_it(w: World) -> None:
    asnity = w.asnity
    body = {"communityId": w.community, "name": "news", "isPrivate": False, "type": "Channel"}
    response = asnity.http("POST", "/api/channel", body, token=w.bob.token)
    assert response.status == 201
    result = response.result
    assert list(result) == ["_id", "name", "communityId", "managerId", "description", "type", "isPrivate", "createdAt", "updatedAt"]
    assert (result["managerId"], result["description"], result["isPrivate"]) == (w.bob.id, "default channel description", False)
    page = asnity.http("GET", f"/api/channels/{result['_id']}/chat?prev=-1", token=w.alice.token).result
    assert page == {"chat": [{
        "id": 0, "type": "SYSTEM", "content": "bob님이 이 채널을 2022년 12월 7일 오후 4:04에 생성했습니다.",
        "senderId": "639045fc61d68253e03c50da", "createdAt": page["chat"][0]["createdAt"], "updatedAt": page["chat"][0]["createdAt"],
    }]}
    described = asnity.http("POST", "/api/channel", {**body, "description": ""}, token=w.bob.token).result
    assert described["description"] == ""  # the default is for an omitted description only


@pytest.mark.parametrize(
    "now_ms, text",
    [
        (START_MS, "2022년 12월 7일 오후 4:04"),
        (1_670_338_800_000, "2022년 12월 7일 오전 12:00"),  # 15:00Z the day before is midnight in Korea
        (1_670_382_000_000, "2022년 12월 7일 오후 12:00"),
        (1_672_498_799_000, "2022년 12월 31일 오후 11:59"),
        (1_672_498_800_000, "2023년 1월 1일 오전 12:00"),
    ],
)
def test_the_bot_date_is_korean_time(now_ms: int, text: str) -> None:
    from satchel.protocol.asnity.model import kst_date

    assert kst_date(now_ms) == text


def test_create_channel_needs_a_community_one_is_in(w: World) -> None:
    body = {"communityId": OBJECT_ID, "name": "news", "isPrivate": False, "type": "Channel"}
    assert w.asnity.http("POST", "/api/channel", body, token=w.bob.token).json == bad("커뮤니티가 없습니다.")
    body["communityId"] = w.community
    assert w.asnity.http("POST", "/api/channel", body, token=w.carol.token).json == bad("커뮤니티에 존재하지 않는 유저입니다.")


def test_get_channel_answers_its_users_info(w: World) -> None:
    response = w.asnity.http("GET", f"/api/channels/{w.public}", token=w.bob.token)
    assert response.status == 200
    assert [u["id"] for u in response.result["users"]] == ["alice@example.com", "bob@example.com"]
    assert set(response.result["users"][0]) == {"_id", "id", "nickname", "status", "profileUrl", "description", "createdAt", "updatedAt"}
    assert w.asnity.http("GET", "/api/channels/not-an-id", token=w.bob.token).json == bad("올바른 사용자 _id 형식이 아닙니다.")
    assert w.asnity.http("GET", f"/api/channels/{OBJECT_ID}", token=w.bob.token).json == bad("존재하지 않는 채널입니다.")


def test_channel_settings_are_the_managers(w: World) -> None:
    asnity = w.asnity
    path = f"/api/channels/{w.public}/settings"
    assert asnity.http("PATCH", path, {"name": "renamed"}, token=w.bob.token).json == error(403, "채널 관리자가 아닙니다.", "Forbidden")
    assert asnity.http("PATCH", path, {"managerId": w.carol.id}, token=w.alice.token).json == bad("채널에 존재하지 않는 유저입니다.")
    ok = asnity.http("PATCH", path, {"name": "renamed", "description": "d", "managerId": w.bob.id}, token=w.alice.token)
    assert (ok.status, ok.result) == (200, {"message": "채널 수정 성공!"})
    channel = asnity.http("GET", f"/api/channels/{w.public}", token=w.bob.token).result
    assert (channel["name"], channel["description"], channel["managerId"]) == ("renamed", "d", w.bob.id)


def test_delete_channel_is_the_managers(w: World) -> None:
    asnity = w.asnity
    assert asnity.http("DELETE", f"/api/channels/{w.public}", token=w.bob.token).json == bad("관리자가 아닙니다!")
    assert asnity.http("DELETE", f"/api/channels/{w.public}", token=w.alice.token).result == {"message": "채널 삭제 성공"}
    assert asnity.http("GET", f"/api/channels/{w.public}", token=w.alice.token).json == bad("존재하지 않는 채널입니다.")
    assert asnity.http("DELETE", f"/api/channels/{w.public}", token=w.alice.token).json == bad("존재하지 않는 채널입니다.")
    listed = asnity.http("GET", "/api/communities", token=w.alice.token).result["communities"][0]
    assert [c["_id"] for c in listed["channels"]] == [w.private]


def test_leave_channel(w: World) -> None:
    asnity = w.asnity
    assert asnity.http("DELETE", f"/api/channels/{w.public}/me", token=w.alice.token).json == bad("관리자를 변경하고 채널을 퇴장하십시오!")
    assert asnity.http("DELETE", f"/api/channels/{w.public}/me", token=w.bob.token).result == {"message": "채널 퇴장 성공!"}
    assert asnity.http("DELETE", f"/api/channels/{w.public}/me", token=w.bob.token).json == bad("사용자가 존재하는 채널이 아닙니다.")
    # The manager alone: leaving deletes it.
    assert asnity.http("DELETE", f"/api/channels/{w.private}/me", token=w.alice.token).status == 200
    assert asnity.http("GET", f"/api/channels/{w.private}", token=w.alice.token).json == bad("존재하지 않는 채널입니다.")


def test_invite_to_a_channel(w: World) -> None:
    asnity = w.asnity
    path = f"/api/channels/{w.private}/users"
    response = asnity.http("POST", path, {"community_id": w.community, "users": [w.bob.id]}, token=w.alice.token)
    assert response.status == 201
    assert response.result["users"] == [w.alice.id, w.bob.id] and response.result["existUnreadChat"] is False
    assert asnity.http("GET", f"/api/channels/{w.private}", token=w.bob.token).status == 200
    assert asnity.http("POST", path, {"community_id": w.community, "users": [w.carol.id]}, token=w.alice.token).json == bad(
        "커뮤니티에 없는 유저는 채널에 참여할 수 없습니다."
    )
    assert asnity.http("POST", path, {"community_id": OBJECT_ID, "users": [w.bob.id]}, token=w.alice.token).json == error(
        401, "존재하지 않는 커뮤니티 입니다.", "Unauthorized"
    )


def test_join_a_public_channel(w: World) -> None:
    asnity = w.asnity
    asnity.http("DELETE", f"/api/channels/{w.public}/me", token=w.bob.token)
    response = asnity.http("POST", f"/api/channels/{w.public}", {"community_id": w.community}, token=w.bob.token)
    assert response.status == 201 and response.result["lastRead"] is False
    assert w.bob.id in response.result["users"]
    assert asnity.http("POST", f"/api/channels/{w.public}", {"community_id": OBJECT_ID}, token=w.bob.token).json == error(
        401, "존재하지 않는 커뮤니티 입니다.", "Unauthorized"
    )


def test_last_read_is_for_the_channels_users(w: World) -> None:
    path = f"/api/channels/{w.private}/lastRead"
    assert w.asnity.http("PATCH", path, {"community_id": w.community}, token=w.bob.token).json == bad("사용자가 존재하는 채널이 아닙니다.")
    assert w.asnity.http("PATCH", path, {"community_id": w.community}, token=w.alice.token).result == {"message": "Last Read 업데이트 성공"}


# -- chats --------------------------------------------------------------------------


def test_post_chat_answers_the_chat_with_equal_timestamps(w: World) -> None:
    response = w.asnity.post_chat(w.bob, w.public, "hello")
    assert response.status == 201
    chat = response.result
    assert list(chat) == ["type", "content", "senderId", "channelId", "id", "communityId", "createdAt", "updatedAt"]
    assert (chat["type"], chat["content"], chat["senderId"], chat["channelId"], chat["id"], chat["communityId"]) == (
        "TEXT", "hello", w.bob.id, w.public, 1, w.community,
    )
    assert ISO.match(chat["createdAt"]) and chat["createdAt"] == chat["updatedAt"]


def test_chat_ids_count_up_per_channel(w: World) -> None:
    ids = [w.asnity.post_chat(w.alice, channel).result["id"] for channel in (w.public, w.private, w.public, w.public, w.private)]
    assert ids == [1, 1, 2, 3, 2]


def fill(asnity: Asnity, account, channel: str, count: int) -> None:
    for n in range(count):
        assert asnity.post_chat(account, channel, f"chat {n}").status == 201


def page(asnity: Asnity, account, channel: str, query: str):
    return asnity.http("GET", f"/api/channels/{channel}/chat?{query}", token=account.token)


def test_pages_of_100_with_prev_and_next_cursors(w: World) -> None:
    asnity = w.asnity
    fill(asnity, w.bob, w.public, 249)  # ids 0 (the bot) .. 249: three pages
    last = page(asnity, w.bob, w.public, "prev=-1").result
    assert [c["id"] for c in last["chat"]] == list(range(200, 250)) and last["prev"] == 1
    middle = page(asnity, w.bob, w.public, "prev=1").result
    assert [c["id"] for c in middle["chat"]] == list(range(100, 200)) and middle["prev"] == 0
    first = page(asnity, w.bob, w.public, "prev=0").result
    assert [c["id"] for c in first["chat"]] == list(range(100)) and "prev" not in first
    assert page(asnity, w.bob, w.public, "next=0").result["next"] == 1
    assert page(asnity, w.bob, w.public, "next=1").result["next"] == 2
    assert "next" not in page(asnity, w.bob, w.public, "next=2").result
    assert list(first["chat"][5]) == ["id", "type", "content", "senderId", "createdAt", "updatedAt"]


def test_a_single_page_has_no_prev(w: World) -> None:
    assert "prev" not in page(w.asnity, w.bob, w.public, "prev=-1").result


@pytest.mark.parametrize("query", ["", "prev=3", "next=3", "prev=abc", "prev=1.5", "prev=-2", "prev=", "other=1"])
def test_a_missing_or_bad_cursor_is_400_not_500(w: World, query: str) -> None:
    response = page(w.asnity, w.bob, w.public, query)
    assert response.status == 400 and response.json["error"] == "Bad Request"


def test_modify_chat_is_the_senders(w: World) -> None:
    asnity = w.asnity
    chat = asnity.post_chat(w.bob, w.public, "first").result
    path = f"/api/channels/{w.public}/chats/{chat['id']}"
    assert asnity.http("PATCH", path, {"content": "theirs"}, token=w.alice.token).json == bad("자신이 보낸 채팅만 수정할 수 있습니다.")
    asnity.clock.advance(5)
    edited = asnity.http("PATCH", path, {"content": "second"}, token=w.bob.token)
    assert edited.status == 200
    info = edited.result
    assert (info["id"], info["content"], info["channelId"], info["communityId"]) == (chat["id"], "second", w.public, w.community)
    assert info["createdAt"] == chat["createdAt"] and info["updatedAt"] > info["createdAt"]


@pytest.mark.parametrize("chat_id", ["99", "abc", "-1", "1.0"])
def test_a_chat_that_does_not_exist_is_404(w: World, chat_id: str) -> None:
    for method, body in (("PATCH", {"content": "x"}), ("DELETE", None)):
        response = w.asnity.http(method, f"/api/channels/{w.public}/chats/{chat_id}", body, token=w.bob.token)
        assert response.json == error(404, "존재하지 않는 채팅입니다.", "Not Found")


@pytest.mark.parametrize("who", ["sender", "channel manager", "community manager"])
def test_delete_chat_by_the_sender_or_a_manager(w: World, who: str) -> None:
    asnity = w.asnity
    dave = asnity.account("dave@example.com")
    asnity.http("POST", f"/api/communities/{w.community}/users", {"users": [dave.id]}, token=w.alice.token)
    news = asnity.channel(w.bob, w.community, "news")  # Bob manages it; Alice manages the community
    if who == "community manager":
        asnity.http("DELETE", f"/api/channels/{news}/me", token=w.alice.token)  # not even in the channel
    chat = asnity.post_chat(dave, news, "mine").result
    path = f"/api/channels/{news}/chats/{chat['id']}"
    carol_like = asnity.account("eve@example.com")
    asnity.http("POST", f"/api/communities/{w.community}/users", {"users": [carol_like.id]}, token=w.alice.token)
    assert asnity.http("DELETE", path, token=carol_like.token).json == bad("채팅을 삭제할 수 없습니다.")
    actor = {"sender": dave, "channel manager": w.bob, "community manager": w.alice}[who]
    asnity.clock.advance(5)
    deleted = asnity.http("DELETE", path, token=actor.token)
    assert deleted.status == 200
    info = deleted.result
    assert info["deletedAt"] == info["updatedAt"] > info["createdAt"]
    assert info["content"] == "" and info["id"] == chat["id"]
    assert asnity.http("DELETE", path, token=actor.token).json == error(404, "존재하지 않는 채팅입니다.", "Not Found")


def test_unread_chat_is_the_first_chat_since_last_read(w: World) -> None:
    asnity = w.asnity

    def unread() -> int:
        return asnity.http("GET", f"/api/channels/{w.public}/unread-chat", token=w.bob.token).result["unreadChatId"]

    fill(asnity, w.alice, w.public, 3)
    asnity.clock.advance(1000)
    asnity.http("PATCH", f"/api/channels/{w.public}/lastRead", {"community_id": w.community}, token=w.bob.token)
    assert unread() == -1
    asnity.clock.advance(1000)
    fill(asnity, w.alice, w.public, 2)
    assert unread() == 4


# -- users --------------------------------------------------------------------------


def test_follow_toggles_both_sides(w: World) -> None:
    asnity = w.asnity
    path = f"/api/user/following/{w.bob.id}"
    assert asnity.http("POST", path, {}, token=w.alice.token).result == {"message": "팔로우 신청 완료"}
    followings = asnity.http("GET", "/api/user/followings", token=w.alice.token).result["followings"]
    followers = asnity.http("GET", "/api/user/followers", token=w.bob.token).result["followers"]
    assert [u["_id"] for u in followings] == [w.bob.id] and [u["_id"] for u in followers] == [w.alice.id]
    assert asnity.http("POST", path, {}, token=w.alice.token).result == {"message": "언팔로우 완료"}
    assert asnity.http("GET", "/api/user/followings", token=w.alice.token).result == {"followings": []}
    assert asnity.http("GET", "/api/user/followers", token=w.bob.token).result == {"followers": []}


def test_follow_errors(w: World) -> None:
    asnity = w.asnity
    assert asnity.http("POST", f"/api/user/following/{w.alice.id}", {}, token=w.alice.token).json == bad("나 자신은 영원한 인생의 친구입니다.")
    for other in (OBJECT_ID, "639045fc61d68253e03c50da"):
        assert asnity.http("POST", f"/api/user/following/{other}", {}, token=w.alice.token).json == bad("해당하는 사용자의 _id가 올바르지 않습니다.")


def test_user_settings(w: World) -> None:
    response = w.asnity.http(
        "PATCH", "/api/user/settings", {"nickname": "al", "status": "AFK", "description": "hi", "profileUrl": "p", "id": "evil@x.com"},
        token=w.alice.token,
    )
    assert (response.status, response.result) == (200, {"message": "사용자 정보 변경 완료"})
    me = w.asnity.http("GET", "/api/user/auth/me", token=w.alice.token).result
    assert (me["nickname"], me["status"], me["description"], me["profileUrl"], me["id"]) == ("al", "AFK", "hi", "p", "alice@example.com")


def test_search_users_by_a_literal_substring_of_email_or_nickname(w: World) -> None:
    asnity = w.asnity

    def search(text: str) -> list[str]:
        return [u["nickname"] for u in asnity.http("GET", f"/api/users?search={text}", token=w.carol.token).result["users"]]

    assert search("ALI") == ["alice"]
    assert search("example.com") == ["alice", "bob", "carol"]
    assert search("b") == ["bob"]
    assert search("nobody") == []


# -- the mount ---------------------------------------------------------------------


@pytest.mark.parametrize("path, mount", [("/api", "asnity"), ("/api/users", "asnity"), ("//api//users/", "asnity"),
                                         ("/apiary", "backpack"), ("/collections", "backpack"), ("/backend/documents/x", "inbox")])
def test_the_mount_claims_api_and_nothing_else(path: str, mount: str) -> None:
    from satchel.protocol.http import HttpRequest

    assert Asnity().board.mount_for(HttpRequest("GET", path, [])).name == mount


@pytest.mark.parametrize(
    "status, message, body",
    [
        (413, "request entity too large", {"statusCode": 413, "message": "request entity too large", "error": "Payload Too Large"}),
        (500, "Internal server error", {"statusCode": 500, "message": "Internal server error"}),
    ],
)
def test_transport_errors_on_api_paths_are_in_nest_format(status: int, message: str, body: dict) -> None:
    import json

    from satchel.protocol.http import HttpRequest

    response = Asnity().board.error_response(HttpRequest("POST", "/api/channel", []), status, message)
    assert (response.status, json.loads(response.body)) == (status, body)
