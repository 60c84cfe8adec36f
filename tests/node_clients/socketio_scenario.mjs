// The stock npm socket.io-client against examples/socketio_protocol_server.py
// (Satchel's Socket.IO layer with the official suite's reference handlers):
// binary payloads both ways, acks both ways, two namespaces on one
// connection, polling then upgrade. Run by tests/test_socketio_server.py:
//
//   node socketio_scenario.mjs http://127.0.0.1:PORT
import { io } from "socket.io-client";

const URL = process.argv[2];
let failed = false;

function report(check, ok, detail = "") {
  if (!ok) failed = true;
  console.log(JSON.stringify({ check, ok, detail: String(detail).slice(0, 500) }));
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

function once(socket, event, ms = 10000) {  // generous: CI machines are shared
  return Promise.race([
    new Promise((resolve) => socket.once(event, (...args) => resolve(args))),
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${event}`)), ms)),
  ]);
}

async function check(name, body) {
  try {
    report(name, true, (await body()) ?? "");
  } catch (error) {
    report(name, false, error && error.stack ? error.stack : error);
  }
}

async function main() {
  const main = io(URL, { auth: { token: "123" } });
  const custom = io(`${URL}/custom`, { auth: { token: "abc" } });

  await check("two namespaces on one connection, each with its own auth payload", async () => {
    const [[mainAuth], [customAuth]] = await Promise.all([once(main, "auth"), once(custom, "auth")]);
    assert(mainAuth.token === "123" && customAuth.token === "abc", JSON.stringify([mainAuth, customAuth]));
    assert(main.io === custom.io && main.id !== custom.id, "not multiplexed");
  });

  await check("long-polling first, then the upgrade to websocket", async () => {
    if (main.io.engine.transport.name !== "websocket") await once(main.io.engine, "upgrade", 5000);
    assert(main.io.engine.transport.name === "websocket", main.io.engine.transport.name);
  });

  await check("a plain event and its echo", async () => {
    main.emit("message", 1, "2", { 3: [true] });
    const args = await once(main, "message-back");
    assert(JSON.stringify(args) === JSON.stringify([1, "2", { 3: [true] }]), JSON.stringify(args));
  });

  await check("binary payloads, both ways", async () => {
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
    main.emit("message", bytes, { nested: Buffer.from("deep") }, "text");
    const [back, nested, text] = await once(main, "message-back");
    assert(Buffer.isBuffer(back) && back.equals(bytes), `got ${back}`);
    assert(Buffer.isBuffer(nested.nested) && nested.nested.toString() === "deep", JSON.stringify(nested));
    assert(text === "text", text);
  });

  await check("a client ack, with a binary argument", async () => {
    const answer = await main.timeout(3000).emitWithAck("message-with-ack", "x", Buffer.from([7, 8]));
    // emitWithAck resolves with the first argument only
    assert(answer === "x", JSON.stringify(answer));
    const both = await new Promise((resolve) => main.emit("message-with-ack", "y", Buffer.from([9]), (...a) => resolve(a)));
    assert(both[0] === "y" && Buffer.isBuffer(both[1]) && both[1][0] === 9, JSON.stringify(both));
  });

  await check("a server emit that asks the client for an ack, acked back", async () => {
    main.once("question", (q, ack) => ack({ answer: q * 2 }, Buffer.from([42])));
    main.emit("ask", 21);
    const [answered, bytes] = await once(main, "answered");
    assert(answered.answer === 42 && Buffer.isBuffer(bytes) && bytes[0] === 42, JSON.stringify(answered));
  });

  await check("leaving one namespace keeps the other", async () => {
    custom.disconnect();
    main.emit("message", "still");
    const [text] = await once(main, "message-back");
    assert(text === "still" && main.connected, text);
  });

  main.close();
}

main()
  .catch((error) => report("scenario", false, error && error.stack ? error.stack : error))
  .finally(() => process.exit(failed ? 1 : 0));
