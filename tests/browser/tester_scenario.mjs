// The Directus websocket tester page (/demo/websocket-tester) in a real
// browser, used as a person would: paste a token, pick a protocol, connect,
// send the example messages, read the log. Exits non-zero on the first
// failed expectation.
// usage: node tester_scenario.mjs API_URL TOKEN ARTIFACTS_DIR
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import path from "node:path";

const [apiUrl, token, artifacts] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

async function logHas(page, pattern) {
  await page.waitForFunction((source) => new RegExp(source).test(document.getElementById("log").textContent),
    pattern.source, { timeout: 5000 }).catch(async () => {
    throw new Error(`the log never showed ${pattern}:\n${await page.textContent("#log")}`);
  });
}

async function session(protocol) {
  const page = await browser.newPage();
  page.on("pageerror", (error) => { throw error; });
  await page.goto(`${apiUrl}/demo/websocket-tester`);
  await page.fill("#token", token);
  await page.check(`input[name=protocol][value=${protocol}]`);
  await page.click("#open");
  await page.waitForSelector("#session:not([hidden])");
  return page;
}

async function sendExample(page, name) {
  await page.click(`#examples button:text-is("${name}")`);
  await page.click("#send");
}

try {
  // The extension protocol (latest format): subscribe, then a POST reaches the subscription.
  const extension = await session("extension");
  await sendExample(extension, "subscribe");
  await sendExample(extension, "post");
  await logHas(extension, /"type":"RESPONSE","data":\{"id":"[0-9a-f]{24}","title":"hello"/);
  await logHas(extension, /"type":"SUBSCRIPTION","key":"[0-9a-f]{24}","action":"create","collection":"articles"/);

  // Core realtime: the page sends auth first, then the SDK's messages.
  const core = await session("core");
  await logHas(core, /"type":"auth","status":"ok"/);
  await sendExample(core, "subscribe");
  await logHas(core, /"type":"subscription","event":"init"/);
  await sendExample(extension, "post");  // a write on the other page reaches this one
  await logHas(core, /"type":"subscription","event":"create","data":\[\{"id":"[0-9a-f]{24}","title":"hello"/);
  await core.screenshot({ path: path.join(artifacts, "websocket-tester.png"), fullPage: true });
  console.log(JSON.stringify({ ok: true }));
} finally {
  await browser.close();
}
