// The admin console (/_/) in a real browser, used as a newcomer would:
// first-run setup with the token the server printed, sign-in, the live
// view (a Backpack websocket opened in another page shows up in the
// connection counts, a write through Backpack in the change stream), a
// record created in the console reaching that Backpack subscriber, a
// permission rule edited in the console and the subscriber no longer sent
// what the rule hides, and a file uploaded through Backpack deleted in
// the console's file list (gone from the list and from Backpack's
// download). Exits non-zero on the first failed expectation.
// usage: node console_scenario.mjs API_URL SETUP_TOKEN API_KEY ARTIFACTS_DIR
import { chromium } from "playwright-core";
import path from "node:path";

const [apiUrl, setupToken, apiKey, artifacts] = process.argv.slice(2);
const EMAIL = "root@example.com";
const PASSWORD = "console password";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

async function waitText(page, selector, text, timeout = 5000) {
  await page.waitForFunction(([s, t]) => { const el = document.querySelector(s); return el && el.textContent.includes(t); },
    [selector, text], { timeout }).catch(async () => {
    const shown = await page.evaluate((s) => document.querySelector(s)?.textContent ?? "(missing)", selector);
    throw new Error(`${selector} never showed ${JSON.stringify(text)}; it shows: ${shown.slice(0, 2000)}`);
  });
}

try {
  const console_ = await (await browser.newContext({ viewport: { width: 1280, height: 860 } })).newPage();
  const errors = [];
  console_.on("pageerror", (error) => errors.push(error));
  // A failed load is an error a newcomer sees in the devtools (the browser's
  // own /favicon.ico once answered Backpack's 401 on every page).
  console_.on("console", (message) => {
    if (message.type() === "error") errors.push(new Error(`console error: ${message.text()} ${JSON.stringify(message.location())}`));
  });

  // A newcomer opens the server's URL, follows the console link and is told
  // where the setup link is; then pastes the printed setup URL into that same
  // tab - only the fragment changes, so no page load: the console must react.
  await console_.goto(apiUrl);
  await console_.click('a[href="/_/"]');
  await waitText(console_, "#signin-form", "No administrator exists yet");
  await console_.goto(`${apiUrl}/_/#setup=${setupToken}`);
  await console_.waitForSelector("#setup-form");
  await console_.fill("#setup-email", EMAIL);
  await console_.fill("#setup-password", PASSWORD);
  await console_.click("#setup-submit");
  // Then sign in with the new account.
  await console_.waitForSelector("#signin-form");
  await waitText(console_, "#signin-form", "administrator was created");
  await console_.fill("#signin-password", PASSWORD);
  await console_.click("#signin-submit");
  await console_.waitForSelector("#connections [data-mount=backpack]");
  await waitText(console_, "#who", EMAIL);
  // The token is in this tab's sessionStorage, never in a cookie.
  const cookies = await console_.context().cookies();
  if (cookies.length) throw new Error(`the console set cookies: ${JSON.stringify(cookies)}`);

  // A Backpack user in another browser: a session cookie and a websocket.
  const other = await (await browser.newContext({ bypassCSP: true })).newPage();
  await other.goto(`${apiUrl}/_/readme`);
  await other.evaluate(async (key) => {
    const post = (path, body) => fetch(path, { method: "POST", headers: { Authorization: `key ${key}`,
      "Content-Type": "application/json" }, body: JSON.stringify(body) });
    await post("/register", { email: "ann@example.com", password: "ann's password" });
    const login = await post("/login", { email: "ann@example.com", password: "ann's password" });
    if (!login.ok) throw new Error(`login: ${login.status}`);
    window.userId = (await login.json()).id;
    window.received = [];
    window.post = post;
    await new Promise((resolve, reject) => {
      const socket = new WebSocket(`ws://${location.host}/`);
      socket.onmessage = (event) => { window.received.push(JSON.parse(event.data)); resolve(); };
      socket.onerror = reject;
    });
  }, apiKey);
  // The live view counts it...
  await waitText(console_, "#connections [data-mount=backpack] .big", "1");
  // ...and shows a write made through Backpack.
  await other.evaluate(() => window.post("/notes", { title: "written through Backpack" }));
  await waitText(console_, "#changes", "via backpack-http");
  await waitText(console_, "#changes", "written through Backpack");
  await console_.screenshot({ path: path.join(artifacts, "console-overview.png"), fullPage: true });

  // A record created in the console reaches the Backpack subscriber.
  await console_.click("nav button[data-view=collections]");
  await console_.waitForSelector("#collection-list button[data-name=notes]");
  await console_.click("#collection-list button[data-name=notes]");
  await console_.waitForSelector("#records");
  await console_.fill("#record-json", JSON.stringify({ title: "made in the console", public: true }));
  await console_.click("#record-save");
  await waitText(console_, "#records", "made in the console");
  const seen = async (title) => other.evaluate((t) => window.received.some((m) => m.action === "create" &&
    m.response && m.response.title === t), title);
  await other.waitForFunction(() => window.received.some((m) => m.response && m.response.title === "made in the console"),
    null, { timeout: 5000 });
  await console_.screenshot({ path: path.join(artifacts, "console-records.png"), fullPage: true });

  // A rule edited in the console: authenticated users read only public notes.
  await console_.click("nav button[data-view=rules]");
  await waitText(console_, "#rules-status", "Revision 0");
  await console_.fill("#rules-json", JSON.stringify({ version: 1, roles: { authenticated: { rules: [
    { collection: "notes", action: "read", filter: { public: { _eq: true } } }] } } }, null, 2));
  await console_.click("#rules-save");
  await waitText(console_, "#rules-status", "revision 1");
  await console_.screenshot({ path: path.join(artifacts, "console-rules.png"), fullPage: true });

  // From now on the subscriber is sent the public note, never the hidden one.
  await console_.click("nav button[data-view=collections]");
  await console_.click("#collection-list button[data-name=notes]");
  await console_.waitForSelector("#records");
  for (const note of [{ title: "hidden by the rule", public: false }, { title: "still public", public: true }]) {
    await console_.fill("#record-json", JSON.stringify(note));
    await console_.click("#record-save");
    await waitText(console_, "#records", note.title);
  }
  await other.waitForFunction(() => window.received.some((m) => m.response && m.response.title === "still public"),
    null, { timeout: 5000 });
  if (await seen("hidden by the rule")) throw new Error("the rule did not stop the hidden note");

  // A file uploaded through Backpack, deleted in the console's file list.
  const FILE = "console-delete-me.txt";
  const uploaded = await other.evaluate(async ([key, name]) => {
    const form = new FormData();
    form.append("bucket", "docs");
    form.append("filename", name);
    form.append("file", new Blob(["bytes to delete"], { type: "text/plain" }), name);
    const response = await fetch("/uploads", { method: "POST", headers: { Authorization: `key ${key}` }, body: form });
    const download = await fetch(`/uploads/${window.userId}/${encodeURIComponent(name)}`,
      { headers: { Authorization: `key ${key}` } });
    return [response.status, download.status];
  }, [apiKey, FILE]);
  if (uploaded[0] !== 200 || uploaded[1] !== 200) throw new Error(`upload, then download: ${uploaded}`);
  await console_.click("nav button[data-view=files]");
  await waitText(console_, "#files", FILE);
  await console_.screenshot({ path: path.join(artifacts, "console-files.png"), fullPage: true });
  console_.once("dialog", (dialog) => dialog.accept());
  await console_.click(`#files tr:has(td:text-is("${FILE}")) button.danger`);
  await console_.waitForFunction((name) => { const table = document.querySelector("#files");
    return table && !table.textContent.includes(name); }, FILE, { timeout: 5000 });
  const after = await other.evaluate(async ([key, name]) => (await fetch(
    `/uploads/${window.userId}/${encodeURIComponent(name)}`, { headers: { Authorization: `key ${key}` } })).status,
    [apiKey, FILE]);
  if (after !== 404) throw new Error(`the deleted file still downloads: ${after}`);

  // Every other view opens without an error and shows no stray "null"; an
  // entry written in the KV view is listed.
  for (const view of ["users", "documents", "entries"]) {
    await console_.click(`nav button[data-view=${view}]`);
    await console_.waitForSelector(view === "entries" ? "#entries" : "#app table");
    const shown = await console_.textContent("#app");
    if (/\bnull\b/.test(shown)) throw new Error(`the ${view} view shows "null": ${shown.slice(0, 500)}`);
  }
  await console_.fill("#entry-id", "greeting");
  await console_.fill("#entry-value", '{"text": "hello"}');
  await console_.click("#entry-save");
  await waitText(console_, "#entries", "hello");

  await console_.click("nav button[data-view=overview]");
  await waitText(console_, "#changes", "still public");
  await waitText(console_, "#changes", "put kvStore greeting");
  if (errors.length) throw errors[0];
  console.log(JSON.stringify({ ok: true }));
} finally {
  await browser.close();
}
