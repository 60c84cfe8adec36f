// What the Asnity scenarios share (asnity_scenario.mjs, asnity_limits_scenario.mjs):
// the check report (one JSON line per check), small promise helpers, Asnity's
// REST API and a signed-up user, and Socket.IO waits with a timeout.

export const results = [];
let anyFailed = false;

export function failed() {
  return anyFailed;
}

export function report(check, ok, detail = "") {
  results.push({ check, ok, detail });
  if (!ok) anyFailed = true;
  console.log(JSON.stringify({ check, ok, detail: String(detail).slice(0, 500) }));
}

export async function check(name, body) {
  try {
    report(name, true, (await body()) ?? "");
  } catch (error) {
    report(name, false, error && error.stack ? error.stack : error);
  }
}

export function assert(condition, message) {
  if (!condition) throw new Error(message);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function withTimeout(promise, ms, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)),
  ]);
}

// Asnity's REST API at `url`: api(method, path, body, token) -> {status, json, headers}.
export function asnityApi(url) {
  return async function api(method, path, body, token) {
    const headers = { "content-type": "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    const response = await fetch(`${url}/api${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let json = null;
    try { json = JSON.parse(text); } catch { json = text; }
    return { status: response.status, json, headers: response.headers };
  };
}

const stamp = Date.now().toString(36);

// A new user, signed up and in: {name, email, token, id}.
export async function signedUpUser(api, name) {
  const id = `${name}-${stamp}@example.com`;
  const password = "correct horse";
  const nickname = name.slice(0, 8);
  let r = await api("POST", "/user/auth/signup", { id, password, nickname });
  assert(r.status === 201, `signup ${r.status} ${JSON.stringify(r.json)}`);
  r = await api("POST", "/user/auth/signin", { id, password });
  assert(r.status === 201 && r.json.result.accessToken, `signin ${r.status}`);
  const me = await api("GET", "/user/auth/me", undefined, r.json.result.accessToken);
  return { name, email: id, token: r.json.result.accessToken, id: me.json.result._id };
}

export function once(socket, event, ms = 3000) {
  return withTimeout(new Promise((resolve) => socket.once(event, (...args) => resolve(args))), ms, event);
}

export function emitWithAck(socket, event, payload, ms = 3000) {
  return withTimeout(socket.timeout(ms).emitWithAck(event, payload), ms + 500, `ack of ${event}`);
}
