// Every client at once against ONE real `satchel serve` (issue 12 part 6),
// driven by tests/test_every_client.py, which made the accounts, tokens,
// community, channel and inbox document and passes them in SETUP (JSON env).
//
//   node every_client_scenario.mjs http://127.0.0.1:PORT
//
// This process hosts the subscribers - Backpack websockets (`ws`, cookie
// session), stock socket.io-client sockets in an Asnity channel,
// @directus/sdk realtime subscriptions, resource websockets (base58 headers
// in Sec-WebSocket-Protocol, encoded by the Python side) - and the writers
// that are sockets (a Backpack websocket, the SDK's rest() and its realtime
// `items`, an Asnity socket). Protocol on stdio, one JSON line each way:
//   stdout {"ready": {...probes}}       every subscription is in place
//   stdin  {"n", "op", ...}             one write; stdout {"n", "result"} once it is committed (acked)
//   stdin  {"op": "finish", "sentinels": {subscriber: marker}}  wait (bounded) until every subscriber saw its sentinel,
//                                       then stdout {"logs": {subscriber: [frames in arrival order]},
//                                       "sdk": {directus subscriber: [what the SDK's subscription yielded]}}
// Nothing here decides what is right: the Python side compares whole sequences.
import { createDirectus, staticToken, authentication, realtime, rest, createItem, updateItem, deleteItem } from '@directus/sdk';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import readline from 'node:readline';

const BASE = process.argv[2];
const WS_BASE = BASE.replace(/^http/, 'ws');
const S = JSON.parse(process.env.SETUP);
const logs = {};
const waiters = [];

function log(name, frame) {
  logs[name].push(frame);
  for (const waiter of [...waiters]) {
    if (waiter.name === name && waiter.predicate(frame)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      clearTimeout(waiter.timer);
      waiter.resolve(frame);
    }
  }
}

// The next frame of `name` (from now on, or already logged after index `from`) that satisfies `predicate`.
function next(name, predicate, ms = 5000, from = null) {
  if (from !== null) {
    const found = logs[name].slice(from).find(predicate);
    if (found) return Promise.resolve(found);
  }
  return new Promise((resolve, reject) => {
    const waiter = { name, predicate, resolve };
    waiter.timer = setTimeout(() => {
      waiters.splice(waiters.indexOf(waiter), 1);
      reject(new Error(`${name}: no expected frame within ${ms} ms; got ${JSON.stringify(logs[name]).slice(-800)}`));
    }, ms);
    waiters.push(waiter);
  });
}

function openWs(name, url, options = {}, protocols = undefined) {
  logs[name] = [];
  return new Promise((resolve, reject) => {
    const socket = protocols ? new WebSocket(url, protocols, options) : new WebSocket(url, options);
    socket.on('message', (data) => log(name, JSON.parse(String(data))));
    socket.on('open', () => resolve(socket));
    socket.on('error', reject);
  });
}

// -- Backpack websockets -----------------------------------------------------------
async function backpack(name, cookie) {
  const greeted = next(name, (f) => f.action === 'connection');
  const socket = await openWs(name, WS_BASE + '/', { headers: { cookie } });
  await greeted;
  return socket;
}

// -- resource websockets -----------------------------------------------------------
async function resources(name, subprotocol) {
  return openWs(name, `${WS_BASE}/realtime`, {}, subprotocol ? [subprotocol] : undefined);
}

async function subscribeResource(name, socket, resource) {
  const from = logs[name].length;
  socket.send(JSON.stringify({ action: 'subscribe', resource }));
  // A subscribe answers the current value, a not-found warning or an error.
  // (An id that cannot name a resource of that type is answered without the resource.)
  return next(name, (f) => (f.resource && f.resource.type === resource.type && f.resource.id === resource.id)
    || (f.code === 'invalid_message' && !f.resource), 5000, from);
}

// -- Directus ----------------------------------------------------------------------
// The SDK's subscription generator reads with a one-shot listener re-armed after each
// `yield`, so of two frames that arrive in one read it yields the first only (a
// client-side loss no server can prevent). What reached the socket is therefore read
// beside the SDK, from its WebSocket; what the SDK yielded is kept in `sdk` and must be
// a part of it, in order.
const sdk = {};
function recording(name) {
  return class RecordingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (event) => log(name, JSON.parse(String(event.data))));
    }
  };
}

async function directusSubscriber(name, makeClient) {
  logs[name] = [];
  sdk[name] = [];
  const client = await makeClient(recording(name));
  await client.connect();
  const { subscription } = await client.subscribe(S.collection, { query: { fields: ['*'] } });
  (async () => {
    for await (const message of subscription) sdk[name].push(message);
  })().catch((error) => sdk[name].push({ iteratorError: String(error) }));
  await next(name, (m) => m.type === 'subscription' && m.event === 'init', 5000, 0);
}

// The extension protocol over raw ws: a subscribe it must refuse.
async function extensionProbe(token, collection) {
  const name = `probe:${collection}`;
  const socket = await openWs(name, `${WS_BASE}/websocket?access_token=${token}`);
  socket.send(JSON.stringify({ type: 'SUBSCRIBE', collection, uid: 'p1' }));
  const answer = await next(name, (f) => f.uid === 'p1', 5000, 0);
  socket.close();
  delete logs[name];
  return answer;
}

// -- Asnity ------------------------------------------------------------------------
async function asnity(name, token) {
  logs[name] = [];
  const socket = io(`${BASE}/socket/commu-${S.community}`, { auth: { token: `Bearer ${token}` }, transports: ['websocket'] });
  // Every event the namespace emits, whatever its name: a record or an entry reaching
  // a room under any name would show here.
  socket.onAny((event, payload) => log(name, { event, payload }));
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', (error) => reject(new Error(`${name}: ${error.message}`)));
  });
  await socket.timeout(5000).emitWithAck('join', { channels: [S.channel] });
  return socket;
}

async function main() {
  const bpWriter = await backpack('backpack:writer', S.writer.cookie);
  await backpack('backpack:reader', S.reader.cookie);

  const aliceSocket = await asnity('socketio:writer', S.writer.asnityToken);
  await asnity('socketio:reader', S.reader.asnityToken);

  await directusSubscriber('directus:writer', (ws) => createDirectus(BASE, { globals: { WebSocket: ws } })
    .with(staticToken(S.writer.staticToken)).with(realtime({ authMode: 'handshake', reconnect: false })));
  await directusSubscriber('directus:reader', async (ws) => {
    const client = createDirectus(BASE, { globals: { WebSocket: ws } })
      .with(authentication('json')).with(realtime({ authMode: 'handshake', reconnect: false }));
    await client.login({ email: S.reader.email, password: S.password });
    return client;
  });

  const probes = {};
  const resWriter = await resources('resources:writer', S.writer.subprotocol);
  probes.writerCollection = await subscribeResource('resources:writer', resWriter, { type: 'collection', id: S.collection });
  probes.writerKv = await subscribeResource('resources:writer', resWriter, { type: 'kvStore', id: S.kvId });
  probes.writerLiveConfig = await subscribeResource('resources:writer', resWriter, { type: 'liveConfig', id: S.kvId });
  probes.writerChats = await subscribeResource('resources:writer', resWriter, { type: 'collection', id: '_asnity.chats' });
  const resReader = await resources('resources:reader', S.reader.subprotocol);
  probes.readerCollection = await subscribeResource('resources:reader', resReader, { type: 'collection', id: S.collection });
  probes.readerKv = await subscribeResource('resources:reader', resReader, { type: 'kvStore', id: S.kvId });
  const resAnonymous = await resources('resources:anonymous', null);
  probes.anonymousDocument = await subscribeResource('resources:anonymous', resAnonymous, { type: 'document', id: S.readToken });
  probes.anonymousCollection = await subscribeResource('resources:anonymous', resAnonymous, { type: 'collection', id: S.collection });

  probes.directusKvStore = await extensionProbe(S.writer.staticToken, 'kvStore');
  probes.directusChats = await extensionProbe(S.writer.staticToken, '_asnity.chats');

  // Writers that are sockets, none of them subscribed to anything.
  const dxRest = createDirectus(BASE).with(staticToken(S.writer.staticToken)).with(rest());
  const dxItems = createDirectus(BASE, { globals: { WebSocket } })
    .with(staticToken(S.writer.staticToken)).with(realtime({ authMode: 'handshake', reconnect: false }));
  await dxItems.connect();
  const itemReplies = [];
  const itemWaiters = [];
  dxItems.onWebSocket('message', (message) => {
    if (message.type !== 'items') return;
    itemReplies.push(message);
    while (itemWaiters.length) itemWaiters.shift()(message);
  });

  // The subscribers' logs start at the first write: what subscribing answered is in `probes`
  // (and the document's current value stays in its log, as the first update).
  const initial = {};
  for (const name of Object.keys(logs)) {
    initial[name] = logs[name].filter((f) => !(f.resource && f.resource.type === 'document')).length;
  }
  for (const name of Object.keys(logs)) logs[name] = logs[name].filter((f) => f.resource && f.resource.type === 'document');
  for (const name of Object.keys(sdk)) sdk[name] = sdk[name].filter((m) => m.event !== 'init');

  console.log(JSON.stringify({ ready: probes, dropped: initial }));

  const ops = {
    async bp_ws(command) {
      const from = logs['backpack:writer'].length;
      bpWriter.send(JSON.stringify(command.message));
      // The sender always gets its own copy, and gets it after the commit.
      const own = await next('backpack:writer', (f) => f.action === command.message.action && !f.httpRequest && f.response
        && (command.message.id === undefined || f.response._id === command.message.id), 5000, from);
      return own.response;
    },
    async dx_rest(command) {
      if (command.action === 'create') return dxRest.request(createItem(S.collection, command.data));
      if (command.action === 'update') return dxRest.request(updateItem(S.collection, command.id, command.data));
      await dxRest.request(deleteItem(S.collection, command.id));
      return null;
    },
    async dx_ws(command) {
      const replied = new Promise((resolve, reject) => {
        itemWaiters.push(resolve);
        setTimeout(() => reject(new Error('no items reply')), 5000);
      });
      const message = { type: 'items', collection: S.collection, action: command.action, data: command.data };
      if (command.id !== undefined) message.id = command.id;
      dxItems.sendMessage(message);
      const reply = await replied;
      if (reply.status === 'error') throw new Error(JSON.stringify(reply));
      return reply.data;
    },
    async sio_chat(command) {
      const ack = await aliceSocket.timeout(5000).emitWithAck('chat', { channelId: S.channel, ...command.chat });
      if (!ack.written) throw new Error(JSON.stringify(ack));
      return ack.chatInfo;
    },
  };

  const input = readline.createInterface({ input: process.stdin });
  for await (const line of input) {
    const command = JSON.parse(line);
    if (command.op === 'finish') {
      // Deliveries to one connection keep commit order: once a subscriber's last
      // expected delivery is here, every earlier one is too.
      // Python names, per subscriber, the marker of the last write it must receive.
      await Promise.all(Object.entries(command.sentinels).map(
        ([name, marker]) => next(name, (f) => JSON.stringify(f).includes(marker), 10000, 0)));
      console.log(JSON.stringify({ logs, sdk, itemReplies: itemReplies.length }));
      break;
    }
    try {
      console.log(JSON.stringify({ n: command.n, result: await ops[command.op](command) }));
    } catch (error) {
      console.log(JSON.stringify({ n: command.n, error: String(error && error.stack || error) }));
    }
  }
  input.close();
}

const watchdog = setTimeout(() => { console.log(JSON.stringify({ fatal: 'watchdog: 60 s' })); process.exit(1); }, 60000);
main().then(
  () => { clearTimeout(watchdog); process.exit(0); },
  (error) => { console.log(JSON.stringify({ fatal: String(error && error.stack || error), logs })); process.exit(1); },
);
