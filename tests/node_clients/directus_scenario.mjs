// @directus/sdk 26 (pinned in package.json) against the real `satchel serve`,
// driven by tests/test_directus_sdk.py. Prints one JSON line per check
// ({"check", "ok", "detail"}); prints RESTART when it wants the server
// killed and started again on the same port, then waits for "restarted" on stdin.
//
//   node directus_scenario.mjs http://127.0.0.1:PORT
//   env: WRITER_TOKEN (a static token), WRITER_EMAIL, WRITER_PASSWORD,
//        READER_EMAIL, READER_PASSWORD (role "reader": published articles only), API_KEY (Backpack's)
//
// Every client uses the SDK's default URL (ws://host/websocket) in handshake mode.
// Node 20 has no global WebSocket: the `ws` package is passed in (directus.md section 3).
import { createDirectus, staticToken, realtime, authentication } from '@directus/sdk';
import WebSocket from 'ws';
import readline from 'node:readline';

const BASE = process.argv[2];
const WS_BASE = BASE.replace(/^http/, 'ws');
const env = process.env;
let failures = 0;

function check(name, ok, detail) {
  if (!ok) failures += 1;
  console.log(JSON.stringify({ check: name, ok: !!ok, detail: detail === undefined ? null : detail }));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// A reconnect delay longer than the server's restart: the SDK's subscription
// generators survive a reconnect only if its first attempt succeeds.
const REALTIME = { authMode: 'handshake', reconnect: { delay: 2500, retries: 20 } };

function sdkWithToken(token) {
  return createDirectus(BASE, { globals: { WebSocket } }).with(staticToken(token)).with(realtime(REALTIME));
}

// What one SDK subscription yields, as a queue the checks wait on.
class Inbox {
  constructor(subscription) {
    this.items = [];
    this.waiters = [];
    this.done = false;
    (async () => {
      try {
        for await (const message of subscription) {
          this.items.push(message);
          this.flush();
        }
      } catch (error) {
        this.error = error;
      }
      this.done = true;
    })();
  }
  flush() {
    for (const waiter of [...this.waiters]) {
      const index = this.items.findIndex(waiter.predicate);
      if (index >= 0) {
        const [message] = this.items.splice(index, 1);
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        clearTimeout(waiter.timer);
        waiter.resolve(message);
      }
    }
  }
  next(predicate = () => true, ms = 5000) {
    return new Promise((resolve) => {
      const waiter = { predicate, resolve };
      waiter.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        resolve(null);
      }, ms);
      this.waiters.push(waiter);
      this.flush();
    });
  }
  take(predicate) {
    const taken = this.items.filter(predicate);
    this.items = this.items.filter((m) => !predicate(m));
    return taken;
  }
}

const created = (title) => (m) => m.event === 'create' && m.data.some((item) => item.title === title);
const titles = (m) => (m && m.data ? m.data.map((item) => item.title).sort() : null);

// The extension's own protocol, with a raw `ws` client (latest format, ?access_token=).
function extension(token) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${WS_BASE}/websocket?access_token=${token}`);
    const pending = new Map();
    let n = 0;
    socket.on('message', (data) => {
      const message = JSON.parse(String(data));
      if (message.uid && pending.has(message.uid)) {
        pending.get(message.uid)(message);
        pending.delete(message.uid);
      }
    });
    socket.on('open', () => resolve({
      socket,
      request(message) {
        const uid = `ext-${++n}`;
        return new Promise((done) => {
          pending.set(uid, done);
          socket.send(JSON.stringify({ ...message, uid }));
        });
      },
      close() { socket.close(); },
    }));
    socket.on('error', reject);
  });
}

async function backpackCookie(email, password) {
  const response = await fetch(`${BASE}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `key ${env.API_KEY}` },
    body: JSON.stringify({ email, password }),
  });
  return response.headers.get('set-cookie').split(';')[0];
}

async function backpackCreate(cookie, data) {
  const response = await fetch(`${BASE}/articles`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `key ${env.API_KEY}`, cookie },
    body: JSON.stringify(data),
  });
  return response.json();
}

async function waitConnected(clients, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const states = await Promise.all(clients.map((client) => client.isConnected()));
    if (states.every(Boolean)) return true;
    await sleep(100);
  }
  return false;
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin });
  const stdin = lines[Symbol.asyncIterator]();

  // 1. staticToken + realtime(): the handshake answers auth-ok first, within 1 s.
  // Every frame the editor's sockets receive, read beside the SDK (which may drop
  // one of two frames that arrive together), from the first one on.
  const raw = [];
  class RecordingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      raw.push({ opened: true });
      this.addEventListener('message', (event) => raw.push(JSON.parse(String(event.data))));
    }
  }
  const editor = createDirectus(BASE, { globals: { WebSocket: RecordingWebSocket } })
    .with(staticToken(env.WRITER_TOKEN)).with(realtime(REALTIME));
  let connected = await editor.connect().then(() => true, (error) => String(error));
  check('staticToken + realtime handshake', connected === true, connected);
  check('auth-ok is the first frame, and alone', JSON.stringify(raw) === '[{"opened":true},{"type":"auth","status":"ok"}]', raw);

  // Records written before anyone subscribes, through the extension protocol.
  let ext = await extension(env.WRITER_TOKEN);
  const seed = await ext.request({ type: 'POST', collection: 'articles', data: { title: 'seed published', status: 'published' } });
  await ext.request({ type: 'post', collection: 'articles', data: { title: 'seed draft', status: 'draft' } });
  check('extension POST answers RESPONSE with the item', seed.type === 'RESPONSE' && seed.data && seed.data.id, seed);

  // 2. subscribe with a query filter: v26 sends it as REST-style strings.
  const editorSub = await editor.subscribe('articles', {
    query: { fields: ['id', 'title', 'status'], filter: { status: { _eq: 'published' } } },
  });
  const editorInbox = new Inbox(editorSub.subscription);
  let init = await editorInbox.next((m) => m.event === 'init');
  check('subscribe with a filter: init data', init && init.uid === '1' && JSON.stringify(titles(init)) === '["seed published"]', init);

  const watcher = sdkWithToken(env.WRITER_TOKEN);
  await watcher.connect();
  const watcherInbox = new Inbox((await watcher.subscribe('articles', { query: { fields: ['id', 'title'] } })).subscription);
  init = await watcherInbox.next((m) => m.event === 'init');
  check('subscribe without a filter: init data', init && JSON.stringify(titles(init)) === '["seed draft","seed published"]', init);

  // 3. login() then realtime(): the access token of POST /auth/login opens the websocket.
  const reader = createDirectus(BASE, { globals: { WebSocket } }).with(authentication('json')).with(realtime(REALTIME));
  const login = await reader.login({ email: env.READER_EMAIL, password: env.READER_PASSWORD }).then((r) => r, (e) => ({ error: String(e) }));
  check('login() over /auth/login', login && login.access_token && login.expires > 30000, login);
  connected = await reader.connect().then(() => true, (error) => String(error));
  check('login() then realtime handshake', connected === true, connected);
  const readerInbox = new Inbox((await reader.subscribe('articles', { query: { fields: ['id', 'title', 'status'] } })).subscription);
  init = await readerInbox.next((m) => m.event === 'init');
  check('the reader role sees published items only', init && JSON.stringify(titles(init)) === '["seed published"]', init);

  async function expectEverywhere(title, what) {
    const [e, w, r] = await Promise.all([
      editorInbox.next(created(title)), watcherInbox.next(created(title)), readerInbox.next(created(title)),
    ]);
    check(`${what}: event to the filtered subscriber`, e && e.uid === '1' && Array.isArray(e.data) && e.data[0].status === 'published', e);
    check(`${what}: event to the unfiltered subscriber`, !!w, w);
    check(`${what}: event to the reader`, r && r.data[0].title === title && !('body' in r.data[0]), r);
  }

  // 4a. A write through Backpack REST.
  const cookie = await backpackCookie(env.WRITER_EMAIL, env.WRITER_PASSWORD);
  const record = await backpackCreate(cookie, { title: 'via backpack', status: 'published' });
  check('Backpack REST create', record && record._id, record);
  await expectEverywhere('via backpack', 'Backpack REST write');

  // 4b. A write through the SDK's items messages (from another client).
  const writer = sdkWithToken(env.WRITER_TOKEN);
  await writer.connect();
  const writerReplies = [];
  writer.onWebSocket('message', (message) => { if (message.type === 'items') writerReplies.push(message); });
  writer.sendMessage({ type: 'items', collection: 'articles', action: 'create', data: { title: 'via sdk items', status: 'published' } });
  await expectEverywhere('via sdk items', 'SDK items write');
  await sleep(200);
  check('the items reply', writerReplies.length === 1 && writerReplies[0].data.title === 'via sdk items' && writerReplies[0].uid === '1', writerReplies);

  // 4c. A write through the extension protocol.
  await ext.request({ type: 'POST', collection: 'articles', data: { title: 'via extension', status: 'published' } });
  await expectEverywhere('via extension', 'extension write');

  // 5. A record the reader's role may not read never reaches it.
  await ext.request({ type: 'POST', collection: 'articles', data: { title: 'a draft', status: 'draft', body: 'secret' } });
  const draftSeen = await watcherInbox.next(created('a draft'));
  check('the draft reaches a subscriber allowed to read it', !!draftSeen, draftSeen);
  await ext.request({ type: 'POST', collection: 'articles', data: { title: 'marker', status: 'published' } });
  const readerNext = await readerInbox.next((m) => m.event === 'create');
  check('the reader never receives the draft (its next event is the marker)', readerNext && readerNext.data[0].title === 'marker', readerNext);
  const editorNext = await editorInbox.next((m) => m.event === 'create');
  check('the query filter keeps the draft from the filtered subscriber', editorNext && editorNext.data[0].title === 'marker', editorNext);
  await watcherInbox.next(created('marker'));

  // 5b. One socket subscribed to what it writes: the event, then the reply (held back a few ms).
  const watcherReplies = [];
  watcher.onWebSocket('message', (message) => { if (message.type === 'items') watcherReplies.push(message); });
  watcher.sendMessage({ type: 'items', collection: 'articles', action: 'create', data: { title: 'own write' } });
  const own = await watcherInbox.next(created('own write'));
  await sleep(300);
  check('a subscriber writing on its own socket gets its event', !!own, own);
  check('... and its items reply', watcherReplies.length === 1 && watcherReplies[0].data.title === 'own write', watcherReplies);

  // 6. Reconnect: the server is killed and started again; the SDK reconnects and re-sends its subscribes
  //    with the same uids (sometimes twice): each uid is replaced, so every event arrives once.
  ext.close();
  console.log('RESTART');
  const answer = await stdin.next();
  check('the server restarted', answer.value === 'restarted', answer.value);
  const back = await waitConnected([editor, watcher, reader], 20000);
  check('the SDK clients reconnected', back, null);
  await sleep(1500); // the re-sent subscribes and their init frames
  editorInbox.take(() => true);
  watcherInbox.take(() => true);
  readerInbox.take(() => true);
  ext = await extension(env.WRITER_TOKEN);
  await ext.request({ type: 'POST', collection: 'articles', data: { title: 'after restart', status: 'published' } });
  await expectEverywhere('after restart', 'after the reconnect');
  await sleep(1000);
  const duplicates = [editorInbox, watcherInbox, readerInbox].map((inbox) => inbox.take(created('after restart')).length);
  check('re-subscribing replaced the subscriptions (no duplicate events)', duplicates.every((n) => n === 0), duplicates);
  const reopened = raw.slice(raw.map((frame) => !!frame.opened).lastIndexOf(true));
  const resubscribed = reopened.filter((frame) => frame.type === 'subscription' && frame.event === 'init' && frame.uid === '1');
  const events = reopened.filter((frame) => frame.type === 'subscription' && frame.event === 'create');
  check('the reconnected socket: auth-ok first, re-subscribed with uid "1"',
    reopened[1] && reopened[1].type === 'auth' && reopened[1].status === 'ok' && resubscribed.length >= 1,
    reopened.map((frame) => frame.type + ':' + (frame.event || frame.status || '')));
  check('... and exactly one event per write on the wire', events.length === 1 && events[0].data[0].title === 'after restart',
    events);

  // 7. unsubscribe(): {"uid":"1","type":"unsubscribe"}, confirmed; no more events for that uid.
  const editorFrames = [];
  editor.onWebSocket('message', (message) => { if (message.type === 'subscription') editorFrames.push(message); });
  editorSub.unsubscribe();
  await sleep(300);
  await ext.request({ type: 'POST', collection: 'articles', data: { title: 'after unsubscribe', status: 'published' } });
  await watcherInbox.next(created('after unsubscribe'));
  await sleep(300);
  check('unsubscribe is confirmed and ends the events',
    editorFrames.length === 1 && editorFrames[0].event === 'unsubscribe' && editorFrames[0].uid === '1', editorFrames);

  ext.close();
  for (const client of [editor, watcher, reader, writer]) client.disconnect();
  lines.close();
}

const watchdog = setTimeout(() => { check('finished in time', false, null); process.exit(1); }, 90000);
main().then(
  () => { clearTimeout(watchdog); process.exit(failures ? 1 : 0); },
  (error) => { check('no exception', false, String(error && error.stack || error)); process.exit(1); },
);
