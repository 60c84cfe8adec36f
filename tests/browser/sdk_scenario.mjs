// Two users in two browser contexts use /sdk.js from a page on another port
// of the same host, exactly as a front-end developer would. Exits non-zero
// with a message on the first failed expectation.
// usage: node sdk_scenario.mjs API_URL PAGE_URL API_KEY ARTIFACTS_DIR
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import path from "node:path";

const [apiUrl, pageUrl, apiKey, artifacts] = process.argv.slice(2);
const suffix = Date.now().toString(36);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

async function user(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error(`[${name}] page error:`, error));
  await page.goto(pageUrl);
  await page.addScriptTag({ url: apiUrl + "/sdk.js" });
  await page.evaluate(([url, key]) => {
    window.sdk = createSdk(url, key);
    window.received = [];
  }, [apiUrl, apiKey]);
  const email = `${name}-${suffix}@example.com`;
  const id = await page.evaluate(async (email) => {
    await sdk.auth.register(email, "correct horse battery");
    return (await sdk.auth.login(email, "correct horse battery")).id;
  }, email);
  await page.evaluate(() => new Promise((resolve, reject) => {
    window.socket = sdk.ws();
    socket.onmessage = (e) => received.push(JSON.parse(e.data));
    socket.onerror = () => reject(new Error("websocket failed"));
    socket.onopen = () => resolve();
  }));
  return { name, page, context, id, email };
}

// Wait until `who` has received a message matching `predicate` (a function source).
async function expectMessage(who, predicate, label) {
  try {
    return await who.page.waitForFunction(
      (source) => window.received.find(new Function("m", "return " + source)), predicate, { timeout: 5000 },
    ).then((handle) => handle.jsonValue());
  } catch (error) {
    const got = await who.page.evaluate(() => window.received);
    throw new Error(`${who.name} never received ${label}; got ${JSON.stringify(got).slice(0, 800)}`);
  }
}

const call = (who, fn, ...args) => who.page.evaluate(fn, args);
const steps = [];
const step = (name) => { steps.push(name); console.log("ok:", name); };

const sally = await user("sally");
const george = await user("george");
await expectMessage(sally, "m.action === 'connection'", "the greeting");
await expectMessage(george, "m.action === 'connection'", "the greeting");
step("register, login and ws() in two contexts, cross-origin with cookies");

const collection = "browser_" + suffix;
const record = await call(sally, ([c]) => sdk.db.createResource(c, { text: "hello" }), collection);
assert.equal(record.text, "hello");
const seen = await expectMessage(george, `m.action === 'create' && m.httpRequest && m.response._id === '${record._id}'`, "the create");
assert.deepEqual(seen.response, record);
step("db.createResource reaches the other user's websocket");

const patched = await call(george, ([c, id]) => sdk.db.updateResource(c, id, { text: "edited", extra: 1 }), collection, record._id);
assert.equal(patched.text, "edited");
await expectMessage(sally, `m.action === 'patch' && m.response.text === 'edited'`, "the patch");
const overwritten = await call(sally, ([c, id]) => sdk.db.overwriteResource(c, id, { only: true }), collection, record._id);
assert.equal(overwritten.only, true);
assert.equal(overwritten.text, undefined);
await expectMessage(george, `m.action === 'update' && m.response.only === true`, "the overwrite");
assert.deepEqual(await call(george, ([c, id]) => sdk.db.getResource(c, id), collection, record._id), overwritten);
assert.equal((await call(george, ([c]) => sdk.db.getCollection(c), collection)).length, 1);
assert.ok((await call(george, () => sdk.db.getCollectionList())).includes(collection));
assert.ok((await call(george, () => sdk.db.getCollectionsList())).includes(collection));
assert.equal(await call(george, ([c]) => sdk.db.createNewCollection(c + "_new"), collection), collection + "_new");
const deleted = await call(george, ([c, id]) => sdk.db.deleteResource(c, id), collection, record._id);
assert.equal(deleted._id, record._id);
await expectMessage(sally, `m.action === 'delete' && m.response._id === '${record._id}'`, "the delete");
step("patch, overwrite, get, list, collections and delete, each seen live by the other");

const failure = await call(sally, async ([c]) => {
  try { await sdk.db.getResource(c, "000000000000000000000000"); return null; }
  catch (error) { return { message: error.message, status: error.status }; }
}, collection);
assert.equal(failure.status, 404);
assert.match(failure.message, /No record/);
step("errors carry the server's message and status");

const rooms = "rooms_" + suffix, meta = "meta_" + suffix;
await call(sally, ([meta, rooms]) => socket.actions.createChannel(meta, rooms, "Mountain Bikers"), meta, rooms);
const created = await expectMessage(sally, "m.action === 'createChannel' && m.usersChannels", "createChannel's reply");
const roomId = created.response._id;
await expectMessage(george, `m.action === 'createChannel' && m.response._id === '${roomId}'`, "the new channel");
await call(george, ([meta, rooms, id]) => socket.actions.joinChannel(meta, rooms, id), meta, rooms, roomId);
await expectMessage(sally, `m.action === 'joinChannel' && m.userId === '${george.id}'`, "george joining");
await call(sally, ([rooms, id]) => socket.actions.broadcast({ text: "ride at nine", channelType: rooms, channelId: id }), rooms, roomId);
const heard = await expectMessage(george, "m.action === 'broadcast' && m.text === 'ride at nine'", "the channel message");
assert.equal(heard.userId, sally.id);
await call(george, ([meta, rooms, id]) => socket.actions.leaveChannel(meta, rooms, id), meta, rooms, roomId);
await expectMessage(sally, `m.action === 'leaveChannel' && m.userId === '${george.id}'`, "george leaving");
step("channels over ws(): create, join, broadcast, leave");

// Files: Sally uploads, George lists and downloads, Sally renames, overwrites, deletes.
const uploaded = await call(sally, async () => {
  const bytes = new Uint8Array(5000).map((_, i) => i % 251);
  return sdk.storage.uploadFile(new File([bytes], "photo.png", { type: "image/png" }), "photo.png", "photos");
});
assert.equal(uploaded.filename, "photo.png");
assert.equal(uploaded.userId, sally.id);
const listed = await call(george, ([id]) => sdk.storage.getListOfUserFiles(id), sally.id);
assert.deepEqual(listed.records.map((r) => r.filename), ["photo.png"]);
const fetched = await call(george, async ([id]) => {
  const response = await sdk.storage.getFile(id, "photo.png");
  const blob = await response.blob();
  const bytes = new Uint8Array(await blob.arrayBuffer());
  return { type: blob.type, size: blob.size, ok: bytes.every((b, i) => b === i % 251) };
}, sally.id);
assert.deepEqual(fetched, { type: "image/png", size: 5000, ok: true });
const renamed = await call(sally, () => sdk.storage.updateFile("photo.png", "renamed.png", "archive"));
assert.equal(renamed.record.filename, "renamed.png");
assert.equal(renamed.record.bucket, "archive");
const overwrote = await call(sally, () => sdk.storage.overwriteFile(new File(["new bytes"], "renamed.png"), "renamed.png"));
assert.deepEqual(overwrote, { message: "file overwritten" });
const refetched = await call(george, async ([id]) => (await (await sdk.storage.getFile(id, "renamed.png")).text()), sally.id);
assert.equal(refetched, "new bytes");
const removed = await call(sally, () => sdk.storage.deleteFile("renamed.png"));
assert.equal(removed.deletedRecord.filename, "renamed.png");
assert.deepEqual((await call(george, ([id]) => sdk.storage.getListOfUserFiles(id), sally.id)).records, []);
step("files: upload, list, fetch, rename, overwrite and delete across two users");

await call(sally, () => sdk.auth.logout());
const afterLogout = await call(sally, async ([c]) => {
  try { await sdk.db.getCollection(c); return "allowed"; } catch (error) { return error.status; }
}, collection);
assert.equal(afterLogout, 403);
step("logout ends the session");

// The demo app, as a newcomer would first see it.
const demo = await (await browser.newContext({ viewport: { width: 1000, height: 600 } })).newPage();
await demo.goto(`${apiUrl}/demo/chat?key=${encodeURIComponent(apiKey)}`);
await demo.fill("#email", `demo-${suffix}@example.com`);
await demo.fill("#password", "correct horse battery");
await demo.click("#register");
await demo.waitForSelector("main:not([hidden])");
await demo.fill("#room-name", "Mountain Bikers");
await demo.click("#new-room button");
await demo.waitForSelector(".room.current");
await demo.fill("#text", "Anyone riding at nine?");
await demo.click("#compose button");
await demo.waitForSelector(".message b");
await demo.screenshot({ path: path.join(artifacts, "demo-chat.png") });
step("demo app: register, create a room, send a message (screenshot saved)");

await browser.close();
console.log(JSON.stringify({ ok: true, steps }));
