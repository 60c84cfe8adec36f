// Asnity's bounds (issue 14) as the stock npm socket.io-client meets them.
// Run by tests/test_asnity_socketio_client.py against a server started with
// --max-connections-per-user 2 --max-channels-per-connection 3:
//
//   node asnity_limits_scenario.mjs http://127.0.0.1:PORT
//
// Prints one JSON line per check ({"check", "ok", "detail"}); exits 0 when
// every check passed.
import { io } from "socket.io-client";

import {
  asnityApi, assert, check, emitWithAck, failed, once, signedUpUser, sleep,
} from "./asnity_client.mjs";

const URL = process.argv[2];
const api = asnityApi(URL);
const user = (name) => signedUpUser(api, name);

// Each socket its own Engine.IO connection (forceNew): one connection each.
function connect(communityId, token) {
  return io(`${URL}/socket/commu-${communityId}`, { auth: { token: `Bearer ${token}` }, forceNew: true, reconnection: false });
}

async function main() {
  const alice = await user("alice");
  const bob = await user("bob");
  let r = await api("POST", "/community", { name: "Bounded", description: "" }, alice.token);
  assert(r.status === 201, `community ${r.status}`);
  const community = r.json.result._id;
  r = await api("POST", `/communities/${community}/users`, { users: [bob.id] }, alice.token);
  assert(r.status === 201, `members ${r.status}`);
  const channels = [];
  for (const name of ["one", "two", "three"]) {
    r = await api("POST", "/channel", { communityId: community, name, isPrivate: false, type: "Channel" }, alice.token);
    assert(r.status === 201, `channel ${r.status}`);
    channels.push(r.json.result._id);
  }
  const [one, two, three] = channels;

  const first = connect(community, alice.token);
  const second = connect(community, alice.token);
  const listener = connect(community, bob.token);
  await check("two connections of one user and one of another are admitted", async () => {
    await Promise.all([once(first, "connect"), once(second, "connect"), once(listener, "connect")]);
  });

  const third = connect(community, alice.token);
  await check("the user's third connection gets connect_error 'Too many connections for this user'", async () => {
    const [error] = await once(third, "connect_error");
    assert(error.message === "Too many connections for this user", `message ${JSON.stringify(error.message)}`);
    assert(!third.connected, "third connected");
    third.close();
  });

  const failures = [];
  first.on("failed-to-send-message", (payload) => failures.push(payload));
  await check("a join past the channels bound joins what fits and emits failed-to-send-message", async () => {
    // The namespace is one of the connection's 3 channels: two rooms fit.
    await emitWithAck(first, "join", { channels: [one, two, three] });
    await sleep(100);
    assert(failures.length === 1, `failures ${JSON.stringify(failures)}`);
    assert(failures[0].message === "Too many channels for this connection", `message ${JSON.stringify(failures[0])}`);
  });

  await check("the admitted connections keep working: a chat reaches a room that fit, not one past the bound", async () => {
    listener.emit("join", { channels: [one, three] });
    await sleep(100);
    const heard = [];
    first.on("new-chat", (chat) => heard.push(chat.channelId));
    second.emit("join", { channels: [one] });
    await sleep(100);
    const ackOne = await emitWithAck(listener, "chat", { chatType: "new", channelId: one, content: "in one" });
    assert(ackOne.written === true, `ack ${JSON.stringify(ackOne)}`);
    const ackThree = await emitWithAck(listener, "chat", { chatType: "new", channelId: three, content: "in three" });
    assert(ackThree.written === true, `ack ${JSON.stringify(ackThree)}`);
    await sleep(200);
    assert(JSON.stringify(heard) === JSON.stringify([one]), `first heard ${JSON.stringify(heard)}`);
    assert(first.connected && second.connected && listener.connected, "a connection was lost");
  });

  await check("a connection closed makes room for the next one of that user", async () => {
    second.close();
    await sleep(300);
    const again = connect(community, alice.token);
    await once(again, "connect");
    again.close();
  });

  first.close();
  listener.close();
}

main().then(
  () => process.exit(failed() ? 1 : 0),
  (error) => { console.error(error); process.exit(1); },
);
