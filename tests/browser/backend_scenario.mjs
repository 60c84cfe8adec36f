// Backend.js (the inbox documents' client, /backend/Backend.js) in Chromium,
// from pages on another port than the API, so CORS is enforced as in
// production. Page A owns an inbox: it creates it with writeDocument and polls
// it with readDocuments / readDocument. Page B sends messages to it with
// sendMessage and removes one with removeMessage; one more message arrives over
// UDP from the Python client. Then the error paths. Exits non-zero with a
// message on the first failed expectation; prints {"ok":true,...} at the end.
// usage: node backend_scenario.mjs API_URL PAGE_URL PYTHON
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import net from "node:net";

const [apiUrl, pageUrl, python] = process.argv.slice(2);
const started = Date.now();
const steps = [];
const step = (name) => { steps.push(name); console.log("ok:", name); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

// A page of its own browser context, on PAGE_URL's origin, with Backend.js
// loaded from the API server by a <script src>, and `settle` to turn a call's
// callbacks into one promise: {kind: "done"|"error"|"notNewer", args}, an
// XMLHttpRequest argument described as {xhr, status, revision}.
async function openPage(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error(`[${name}] page error:`, error));
  await page.goto(pageUrl);
  await page.addScriptTag({ url: apiUrl + "/backend/Backend.js" });
  await page.evaluate(() => {
    const describe = (value) => value instanceof XMLHttpRequest
      ? { xhr: true, status: value.status, revision: value.getResponseHeader("Revision") } : value;
    window.settle = (start) => new Promise((resolve) => {
      const as = (kind) => (...args) => resolve({ kind, args: args.map(describe) });
      start(as("done"), as("error"), as("notNewer"));
    });
  });
  return (fn, ...args) => page.evaluate(fn, args);
}

const A = await openPage("owner");
const B = await openPage("sender");

// -- loading ---------------------------------------------------------------
const urls = await A(([api]) => ({
  type: typeof Backend,
  given: new Backend(api).url,
  givenBackendPath: new Backend(api + "/backend/").url,
  fromScript: new Backend().url,
  origin: location.origin,
}), apiUrl);
assert.equal(urls.type, "function");
assert.equal(urls.given, apiUrl + "/backend");
assert.equal(urls.givenBackendPath, apiUrl + "/backend");
assert.equal(urls.fromScript, apiUrl + "/backend", "without a url: the server the script came from");
assert.notEqual(urls.origin, apiUrl, "the page must be on another origin than the API");
const moduleCheck = await B(async ([api]) => {
  const module = await import(api + "/backend/Backend.mjs");
  return { same: module.default === module.Backend, url: new module.Backend().url, hex: module.Backend.randomToken() };
}, apiUrl);
assert.deepEqual({ ...moduleCheck, hex: moduleCheck.hex.length }, { same: true, url: apiUrl + "/backend", hex: 32 });
const random = await A(() => {
  const backend = new Backend();
  const ids = Array.from({ length: 50 }, () => backend.randomMessageId());
  const tokens = Array.from({ length: 50 }, () => backend.randomToken());
  return { ids, tokens, statics: [Backend.randomMessageId(), Backend.randomToken()] };
});
assert.ok(random.ids.every((id) => /^[0-9a-f]{16}$/.test(id)));
assert.ok(random.tokens.every((token) => /^[0-9a-f]{32}$/.test(token)));
assert.equal(new Set(random.ids).size, 50);
assert.equal(new Set(random.tokens).size, 50);
assert.match(random.statics[0], /^[0-9a-f]{16}$/);
assert.match(random.statics[1], /^[0-9a-f]{32}$/);
step("Backend.js and Backend.mjs load cross-origin; url defaults to the script's server; random ids and tokens");

// -- page A creates an inbox --------------------------------------------------
await A(([api]) => {
  window.backend = new Backend(api);
  window.readToken = backend.randomToken();
  window.writeToken = backend.randomToken();
}, apiUrl);
const { readToken, writeToken } = await A(() => ({ readToken, writeToken }));
const created = await A(() => settle((done, error) =>
  backend.writeDocument(readToken, writeToken, 0, 1, { "#messages": {}, title: "sensors" }, done, error)));
assert.equal(created.kind, "done", JSON.stringify(created));
assert.equal(created.args.length, 1);
assert.deepEqual(created.args[0], { xhr: true, status: 200, revision: "1" });
const read = await A(() => settle((done, error) => backend.readDocument(readToken, done, error)));
assert.equal(read.kind, "done", JSON.stringify(read));
assert.deepEqual(read.args.slice(0, 2), [{ "#messages": {}, title: "sensors" }, 1]);
assert.equal(read.args[2].status, 200);
const notNewer = await A(() => settle((done, error, notNewer) => backend.readDocument(readToken, done, error, 1, notNewer)));
assert.equal(notNewer.kind, "notNewer", JSON.stringify(notNewer));
assert.deepEqual(notNewer.args, [1, { xhr: true, status: 304, revision: "1" }]);
const absent = await A(() => Backend.randomToken());
const batch = await A(([absent]) => settle((done, error) =>
  backend.readDocuments({ [readToken]: 1, [absent]: 0 }, done, error)), absent);
assert.equal(batch.kind, "done", JSON.stringify(batch));
assert.deepEqual(batch.args[0], { [absent]: null }, "not newer: left out; absent: null");
const batchAny = await A(() => settle((done, error) => backend.readDocuments({ [readToken]: null }, done, error)));
assert.deepEqual(batchAny.args[0], { [readToken]: { revision: 1, content: { "#messages": {}, title: "sensors" } } });
step("writeDocument creates an inbox; readDocument (200, then 304 with If-Newer-Than); readDocuments (null, left out, any)");

// Page A polls the batch read with the last revision it saw.
await A(() => {
  window.watch = { revision: 0, doc: null, revisions: [], polls: 0, unchanged: 0, errors: [] };
  (function poll() {
    if (window.polling === false) return;
    backend.readDocuments({ [readToken]: watch.revision }, (results) => {
      watch.polls++;
      const entry = results[readToken];
      if (entry) {
        watch.revision = entry.revision;
        watch.doc = entry.content;
        watch.revisions.push(entry.revision);
      } else {
        watch.unchanged++;
      }
      setTimeout(poll, 25);
    }, (code) => { watch.errors.push(code); setTimeout(poll, 100); });
  })();
});
const messagesSeenByA = async (predicate, label) => {
  try {
    await A(([source]) => new Promise((resolve, reject) => {
      const test = new Function("messages", "return " + source);
      const deadline = Date.now() + 5000;
      (function check() {
        if (watch.doc && test(watch.doc["#messages"])) return resolve();
        if (Date.now() > deadline) return reject(new Error("timeout"));
        setTimeout(check, 10);
      })();
    }), predicate);
  } catch (error) {
    const got = await A(() => watch);
    throw new Error(`page A never saw ${label}; it has ${JSON.stringify(got).slice(0, 800)}`);
  }
  return A(() => watch.doc["#messages"]);
};

// -- page C watches the document live, over the resource websocket ------------
const C = await openPage("watcher");
await C(([api, readToken]) => {
  window.backend = new Backend(api);
  window.live = { changes: [], errors: [], absentErrors: [] };
  window.liveWatch = backend.watchDocument(readToken,
    (data, revision) => live.changes.push({ revision, messages: data["#messages"] }),
    (code) => live.errors.push(code));
  // A document that does not exist yet: 404, and the watch stays.
  backend.watchDocument(Backend.randomToken(), () => {}, (code) => live.absentErrors.push(code));
}, apiUrl, readToken);
async function liveSeen(predicate, label) {
  for (let i = 0; i < 100; i++) {
    const seen = await C(() => live);
    if (seen.changes.length && predicate(seen.changes[seen.changes.length - 1].messages)) return seen;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`page C's watchDocument never saw ${label}: ${JSON.stringify(await C(() => live)).slice(0, 800)}`);
}
await liveSeen(() => true, "the document as it is");

// -- page B sends and removes messages -----------------------------------------
await B(([api, writeToken]) => {
  window.backend = new Backend(api);
  window.writeToken = writeToken;
  window.ids = [backend.randomMessageId(), backend.randomMessageId(), backend.randomMessageId()];
}, apiUrl, writeToken);
const ids = await B(() => ids);
const sent = await B(() => Promise.all([
  settle((done, error) => backend.sendMessage(writeToken, ids[0], { "#": Date.now(), type: "temperature", value: 21.1 }, done, error)),
  settle((done, error) => backend.sendMessage(writeToken, ids[1], { "#": Date.now(), type: "humidity", value: 40 }, done, error)),
]));
for (const result of sent) {
  assert.equal(result.kind, "done", JSON.stringify(result));
  assert.equal(result.args.length, 1);
  assert.equal(result.args[0].status, 200);
}
let messages = await messagesSeenByA(`messages[${JSON.stringify(ids[0])}] && messages[${JSON.stringify(ids[1])}]`, "both messages");
assert.equal(messages[ids[0]].value, 21.1);
assert.equal(messages[ids[1]].type, "humidity");
step("page B's sendMessage calls reach page A's readDocuments poll");

const older = await B(() => settle((done, error) => backend.sendMessage(writeToken, ids[1], { "#": 1, type: "stale" }, done, error)));
assert.equal(older.kind, "done");
const updated = await B(() => settle((done, error) => backend.sendMessage(writeToken, ids[1], { "#": Date.now() + 1000, type: "humidity", value: 41 }, done, error)));
assert.equal(updated.kind, "done");
messages = await messagesSeenByA(`messages[${JSON.stringify(ids[1])}].value === 41`, "the updated message");
assert.equal(messages[ids[1]].type, "humidity", "an older revision never wins");
const removed = await B(() => settle((done, error) => backend.removeMessage(writeToken, ids[0], done, error)));
assert.equal(removed.kind, "done", JSON.stringify(removed));
assert.equal(removed.args[0].status, 200);
messages = await messagesSeenByA(`!messages[${JSON.stringify(ids[0])}] && messages[${JSON.stringify(ids[1])}]`, "the removal");
const removedAgain = await B(() => settle((done, error) => backend.removeMessage(writeToken, ids[0], done, error)));
assert.equal(removedAgain.kind, "done", "removing an absent message is fine");
step("a newer revision replaces a message, an older one does not; removeMessage removes it, seen by page A");

// -- a message over UDP, from the Python client ------------------------------------
const port = Number(new URL(apiUrl).port);
const udpCode = await new Promise((resolve, reject) => execFile(python, ["-c", `
import sys
from satchel.transports.udp import send_message_udp
print(send_message_udp("127.0.0.1", int(sys.argv[1]), sys.argv[2], sys.argv[3], {"#": 5, "via": "udp", "v": 22.5}))
`, String(port), writeToken, ids[2]], { timeout: 10000 }, (error, stdout, stderr) => error ? reject(new Error(stderr || error.message)) : resolve(stdout.trim())));
assert.equal(udpCode, "M");
messages = await messagesSeenByA(`messages[${JSON.stringify(ids[2])}] && messages[${JSON.stringify(ids[2])}].via === "udp"`, "the UDP message");
assert.deepEqual(messages[ids[2]], { "#": 5, via: "udp", v: 22.5 });
const watched = await A(() => watch);
assert.deepEqual(watched.errors, []);
assert.ok(watched.unchanged > 0, "a poll with the current revision returns nothing for the document");
for (let i = 1; i < watched.revisions.length; i++) assert.ok(watched.revisions[i] > watched.revisions[i - 1], "revisions increase");
const fresh = await A(([previous]) => settle((done, error, notNewer) => backend.readDocument(readToken, done, error, previous, notNewer)), watched.revisions[0]);
assert.equal(fresh.kind, "done", JSON.stringify(fresh));
assert.equal(fresh.args[0]["#messages"][ids[2]].via, "udp");
assert.equal(fresh.args[1], watched.revision);
step("a message sent over UDP by satchel.transports.udp.send_message_udp shows up in page A");

const seenLive = await liveSeen((m) => m[ids[2]] && m[ids[2]].via === "udp" && !m[ids[0]], "the UDP message");
assert.deepEqual(seenLive.errors, []);
assert.deepEqual(seenLive.absentErrors, [404]);
for (let i = 1; i < seenLive.changes.length; i++) {
  assert.ok(seenLive.changes[i].revision > seenLive.changes[i - 1].revision, "live revisions increase");
}
assert.ok(seenLive.changes.some((change) => change.messages[ids[0]] && change.messages[ids[0]].value === 21.1),
  "the watch saw the first message before its removal");
assert.equal(seenLive.changes[seenLive.changes.length - 1].revision, watched.revision, "the watch ends at the stored revision");
await C(() => liveWatch.close());
step("watchDocument sees every write live - HTTP messages, the removal, the UDP message - in revision order");

// -- error paths -------------------------------------------------------------
await A(() => { window.polling = false; });
const current = watched.revision;
const errors = {};
errors.wrongWriteToken = await A(([current]) => settle((done, error) =>
  backend.writeDocument(readToken, Backend.randomToken(), current, current + 1, { "#messages": {} }, done, error)), current);
errors.staleDerivedFrom = await A(() => settle((done, error) =>
  backend.writeDocument(readToken, writeToken, 1, 2, { "#messages": {} }, done, error)));
errors.unknownDocument = await A(() => settle((done, error) => backend.readDocument(Backend.randomToken(), done, error)));
errors.malformedReadToken = await A(() => settle((done, error) => backend.readDocument("not-a-token", done, error)));
errors.unknownWriteToken = await B(() => settle((done, error) =>
  backend.sendMessage(Backend.randomToken(), Backend.randomMessageId(), { "#": 1 }, done, error)));
errors.badMessageId = await B(() => settle((done, error) => backend.sendMessage(writeToken, "not-an-id", { "#": 1 }, done, error)));
errors.badMessageIdRemove = await B(() => settle((done, error) => backend.removeMessage(writeToken, "0123", done, error)));
errors.revisionNotNumber = await B(() => settle((done, error) => backend.sendMessage(writeToken, ids[0], { "#": "soon" }, done, error)));
errors.tooLarge = await B(() => settle((done, error) => backend.sendMessage(writeToken, ids[0], { "#": 1, text: "x".repeat(5000) }, done, error)));
const plain = await A(() => ({ read: Backend.randomToken(), write: Backend.randomToken() }));
const plainCreated = await A(([plain]) => settle((done, error) => backend.writeDocument(plain.read, plain.write, 0, 1, { not: "an inbox" }, done, error)), plain);
assert.equal(plainCreated.kind, "done");
errors.notAnInbox = await B(([write]) => settle((done, error) => backend.sendMessage(write, Backend.randomMessageId(), { "#": 1 }, done, error)), plain.write);
const closedPort = await new Promise((resolve) => {
  const probe = net.createServer().listen(0, "127.0.0.1", () => { const { port } = probe.address(); probe.close(() => resolve(port)); });
});
errors.networkFailure = await B(([url]) => settle((done, error) =>
  new Backend(url).sendMessage(writeToken, Backend.randomMessageId(), { "#": 1 }, done, error)), `http://127.0.0.1:${closedPort}`);
errors.requestIsTheXhr = await B(() => settle((done, error) =>
  backend.sendMessage(writeToken, "zz", {}, done, (code, request) => error(request instanceof XMLHttpRequest && request.readyState === 4, code))));
const expected = {
  wrongWriteToken: 403, staleDerivedFrom: 409, unknownDocument: 404, malformedReadToken: 400, unknownWriteToken: 404,
  badMessageId: 400, badMessageIdRemove: 400, revisionNotNumber: 400, tooLarge: 413, notAnInbox: 403, networkFailure: 0,
};
for (const [name, code] of Object.entries(expected)) {
  const result = errors[name];
  assert.equal(result.kind, "error", `${name}: ${JSON.stringify(result)}`);
  assert.equal(result.args.length, 2, name);
  assert.equal(result.args[0], code, `${name}: ${JSON.stringify(result)}`);
  assert.equal(result.args[1].xhr, true, name);
  assert.equal(result.args[1].status, code, name);
}
assert.equal(errors.staleDerivedFrom.args[1].revision, String(current), "a 409 tells the holder of the write token the current revision");
assert.deepEqual(errors.requestIsTheXhr.args, [true, 400]);
const untouched = await A(() => settle((done, error) => backend.readDocument(readToken, done, error)));
assert.equal(untouched.args[1], current, "no failed call changed the document");
step("errors: onError(403|409|404|400|413|0, request) with the XMLHttpRequest itself");

await browser.close();
console.log(JSON.stringify({ ok: true, steps: steps.length, ms: Date.now() - started }));
