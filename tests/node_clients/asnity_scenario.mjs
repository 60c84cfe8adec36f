// Asnity's socket server and REST API driven by the stock npm socket.io-client
// (pinned in package-lock.json), as the Asnity app's client uses them
// (asnity.md section 6). Run by tests/test_asnity_socketio_client.py:
//
//   node asnity_scenario.mjs http://127.0.0.1:PORT
//
// Prints one JSON line per check ({"check", "ok", "detail"}) and "RESTART"
// when it wants the server killed and started again on the same port; the
// test answers on stdin. Exits 0 when every check passed.
import { io } from "socket.io-client";
import readline from "node:readline";

import {
  asnityApi, assert, check, emitWithAck, failed, once, report, results, signedUpUser, sleep, withTimeout,
} from "./asnity_client.mjs";

const URL = process.argv[2];
const api = asnityApi(URL);
const user = (name) => signedUpUser(api, name);

function connect(communityId, token, options = {}) {
  return io(`${URL}/socket/commu-${communityId}`, {
    auth: { token: `Bearer ${token}` },
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    ...options,
  });
}

function collect(socket, events) {
  const seen = [];
  for (const event of events) socket.on(event, (payload) => seen.push([event, payload]));
  return seen;
}

const stdin = readline.createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();

async function main() {
  const alice = await user("alice");
  const bob = await user("bob");
  const carol = await user("carol");
  let r = await api("POST", "/community", { name: "Bikers", description: "mud" }, alice.token);
  assert(r.status === 201, `community ${r.status} ${JSON.stringify(r.json)}`);
  const community = r.json.result._id;
  r = await api("POST", `/communities/${community}/users`, { users: [bob.id] }, alice.token);
  assert(r.status === 201, `invite ${r.status} ${JSON.stringify(r.json)}`);
  r = await api("POST", "/channel", { communityId: community, name: "general", isPrivate: false, type: "Channel" }, alice.token);
  assert(r.status === 201, `channel ${r.status} ${JSON.stringify(r.json)}`);
  const general = r.json.result._id;

  const a = connect(community, alice.token);
  const b = connect(community, bob.token);
  let written;

  await check("default connect: long-polling first, then the upgrade to websocket", async () => {
    await Promise.all([once(a, "connect"), once(b, "connect")]);
    assert(a.io.engine.transport.name === "polling" || a.io.engine.transport.name === "websocket", "a transport");
    await withTimeout(new Promise((resolve) => {
      if (a.io.engine.transport.name === "websocket") return resolve();
      a.io.engine.once("upgrade", resolve);
    }), 5000, "upgrade");
    assert(a.io.engine.transport.name === "websocket", `still ${a.io.engine.transport.name}`);
    return `sid ${a.id}`;
  });

  const aSeen = collect(a, ["new-chat", "modify-chat", "delete-chat", "failed-to-send-message"]);
  const bSeen = collect(b, ["new-chat", "modify-chat", "delete-chat"]);

  await check("join, then chat new: ack {written:true, chatInfo}; the room minus the sender gets new-chat", async () => {
    // The Asnity client emits join without an ack; a client that asks for
    // one gets it (with no arguments) rather than waiting for ever.
    await emitWithAck(a, "join", { channels: [general] });
    b.emit("join", { channels: [general] });
    await sleep(200);
    const ack = await emitWithAck(a, "chat", { chatType: "new", channelId: general, content: "hello" });
    assert(ack.written === true && ack.chatInfo && typeof ack.chatInfo.id === "number", JSON.stringify(ack));
    written = ack.chatInfo;
    const [info] = await once(b, "new-chat");
    assert(info.id === written.id && info.content === "hello" && info.senderId === alice.id, JSON.stringify(info));
    assert(info.channelId === general && info.communityId === community, JSON.stringify(info));
    await sleep(200);
    assert(!aSeen.some(([event]) => event === "new-chat"), "the sender heard its own chat");
    return `chat ${written.id}`;
  });

  await check("chat modify and delete reach the room; delete keeps the id and sets deletedAt", async () => {
    let ack = await emitWithAck(a, "chat", { chatType: "modify", channelId: general, chatId: written.id, content: "edited" });
    assert(ack.written === true && ack.chatInfo.content === "edited", JSON.stringify(ack));
    let [info] = await once(b, "modify-chat");
    assert(info.id === written.id && info.content === "edited" && info.updatedAt !== info.createdAt, JSON.stringify(info));
    ack = await emitWithAck(a, "chat", { chatType: "delete", channelId: general, chatId: written.id });
    assert(ack.written === true && ack.chatInfo.deletedAt, JSON.stringify(ack));
    [info] = await once(b, "delete-chat");
    assert(info.id === written.id && info.deletedAt, JSON.stringify(info));
  });

  await check("a chat over 300 characters is refused with {written:false}", async () => {
    const ack = await emitWithAck(a, "chat", { chatType: "new", channelId: general, content: "x".repeat(301) });
    assert(ack.written === false, JSON.stringify(ack));
  });

  await check("a failed chat acks {written:false} and emits failed-to-send-message", async () => {
    const ack = await emitWithAck(a, "chat", { chatType: "sideways", channelId: general });
    assert(ack.written === false, JSON.stringify(ack));
    await sleep(100);
    assert(aSeen.some(([event]) => event === "failed-to-send-message"), "no failed-to-send-message");
  });

  await check("a REST chat reaches the room exactly as a socket chat does", async () => {
    const before = bSeen.length;
    const r2 = await api("POST", `/channels/${general}/chat`, { type: "TEXT", content: "over REST" }, alice.token);
    assert(r2.status === 201, `${r2.status} ${JSON.stringify(r2.json)}`);
    const [info] = await once(b, "new-chat");
    assert(info.content === "over REST" && info.id === r2.json.result.id, JSON.stringify(info));
    assert(bSeen.length === before + 1, "more than one delivery");
  });

  await check("invite-users-to-channel: ack {isSuccess}; the invitee's sockets join and hear invited-to-channel", async () => {
    const r2 = await api("POST", "/channel", { communityId: community, name: "secret", isPrivate: true, type: "Channel" }, alice.token);
    const secret = r2.json.result._id;
    const invited = once(b, "invited-to-channel");
    const ack = await emitWithAck(a, "invite-users-to-channel", { community_id: community, channel_id: secret, users: [bob.id] });
    assert(ack.isSuccess === true, JSON.stringify(ack));
    const [channel] = await invited;
    assert(channel._id === secret && channel.communityId === community, JSON.stringify(channel));
    const heard = once(b, "new-chat");
    const ack2 = await emitWithAck(a, "chat", { chatType: "new", channelId: secret, content: "psst" });
    assert(ack2.written === true, JSON.stringify(ack2));
    const [info] = await heard;
    assert(info.channelId === secret && info.content === "psst", JSON.stringify(info));
  });

  await check("a bad token is refused: connect_error Unauthorized, no automatic retry", async () => {
    const bad = connect(community, "not-a-token");
    const [error] = await once(bad, "connect_error");
    assert(error.message === "Unauthorized", error.message);
    assert(!bad.active, "the client retries a refused connection");
    bad.close();
  });

  await check("a user who is not a member is refused: connect_error", async () => {
    const outsider = connect(community, carol.token);
    const [error] = await once(outsider, "connect_error");
    assert(error.message === "Forbidden", error.message);
    outsider.close();
  });

  await check("several namespaces on one connection, each with its own auth", async () => {
    const r2 = await api("POST", "/community", { name: "Climbers" }, alice.token);
    const second = r2.json.result._id;
    // io() reuses the Manager (one Engine.IO connection) of the same origin
    // for a namespace it does not carry yet: alice's second community rides
    // on the connection of her first.
    const other = io(`${URL}/socket/commu-${second}`, { auth: { token: `Bearer ${alice.token}` } });
    await once(other, "connect");
    assert(other.io === a.io, "not multiplexed");
    assert(a.connected && other.connected && a.id !== other.id, "both namespaces connected");
    const heard = once(b, "new-chat");
    await emitWithAck(a, "chat", { chatType: "new", channelId: general, content: "still here" });
    const [info] = await heard;
    assert(info.content === "still here", JSON.stringify(info));
    // Another user's token on a namespace of its own connection is refused.
    const refused = io(`${URL}/socket/commu-${second}`, { auth: { token: `Bearer ${bob.token}` }, forceNew: true });
    const [error] = await once(refused, "connect_error");
    assert(error.message === "Forbidden", error.message);
    other.close();
    refused.close();
  });

  await check("websocket only (transports: ['websocket'])", async () => {
    const ws = connect(community, bob.token, { transports: ["websocket"], forceNew: true });
    await once(ws, "connect");
    assert(ws.io.engine.transport.name === "websocket", ws.io.engine.transport.name);
    ws.emit("join", { channels: [general] });
    await sleep(100);
    const heard = once(ws, "new-chat");
    await emitWithAck(a, "chat", { chatType: "new", channelId: general, content: "to the websocket" });
    const [info] = await heard;
    assert(info.content === "to the websocket", JSON.stringify(info));
    ws.close();
  });

  await check("a signed-out token is refused at the socket's next write", async () => {
    const r2 = await api("POST", "/user/auth/signin", { id: bob.email, password: "correct horse" });
    const token = r2.json.result.accessToken;
    const s = connect(community, token, { forceNew: true });
    await once(s, "connect");
    let ack = await emitWithAck(s, "chat", { chatType: "new", channelId: general, content: "before" });
    assert(ack.written === true, JSON.stringify(ack));
    const out = await api("POST", "/user/auth/signout", {}, token);
    assert(out.status === 201, `signout ${out.status}`);
    ack = await emitWithAck(s, "chat", { chatType: "new", channelId: general, content: "after" });
    assert(ack.written === false, JSON.stringify(ack));
    s.close();
  });

  await check("many clients in many rooms: exact delivery, nobody outside the room, never the sender", async () => {
    const rooms = [];
    for (const name of ["r0", "r1", "r2"]) {
      const rr = await api("POST", "/channel", { communityId: community, name, isPrivate: false, type: "Channel" }, alice.token);
      rooms.push(rr.json.result._id);
    }
    const clients = [];
    for (let i = 0; i < 12; i++) {
      const who = i % 2 ? bob : alice;
      const s = connect(community, who.token, { forceNew: true, transports: i % 3 ? ["websocket"] : ["polling", "websocket"] });
      clients.push({ s, room: rooms[i % 3], seen: [] });
    }
    await Promise.all(clients.map(({ s }) => once(s, "connect", 5000)));
    for (const c of clients) {
      c.s.on("new-chat", (info) => c.seen.push(info.content));
      c.s.emit("join", { channels: [c.room] });
    }
    await sleep(300);
    for (let i = 0; i < clients.length; i++) {
      const ack = await emitWithAck(clients[i].s, "chat", { chatType: "new", channelId: clients[i].room, content: `m${i}` });
      assert(ack.written === true, JSON.stringify(ack));
    }
    await sleep(500);
    for (let i = 0; i < clients.length; i++) {
      const expected = clients.map((c, j) => (j !== i && c.room === clients[i].room ? `m${j}` : null)).filter(Boolean).sort();
      const got = [...clients[i].seen].sort();
      assert(JSON.stringify(got) === JSON.stringify(expected), `client ${i}: ${JSON.stringify(got)} != ${JSON.stringify(expected)}`);
    }
    for (const { s } of clients) s.close();
    return `${clients.length} clients, 3 rooms`;
  });

  await check("reconnection after the server drops the connection (killed and started again)", async () => {
    const s = connect(community, bob.token, { forceNew: true });
    await once(s, "connect");
    const dropped = once(s, "disconnect", 10000);
    console.log("RESTART");
    const answer = await withTimeout(lines.next(), 30000, "the restart");
    assert(answer.value === "restarted", `the test said ${answer.value}`);
    await dropped;
    await once(s, "connect", 15000);
    const ack = await emitWithAck(s, "chat", { chatType: "new", channelId: general, content: "back" });
    assert(ack.written === true, JSON.stringify(ack));
    s.close();
  });

  a.close();
  b.close();
}

main()
  .catch((error) => report("scenario", false, error && error.stack ? error.stack : error))
  .finally(() => {
    console.log(JSON.stringify({ done: true, passed: results.filter((r) => r.ok).length, failed: results.filter((r) => !r.ok).length }));
    process.exit(failed() ? 1 : 0);
  });
