// Peer: a Node socket.io 4 server doing what Satchel's Asnity socket server
// does in benches/run.py's Socket.IO case, in memory (no store, no auth):
//
// - namespaces /socket/commu-<anything> (one dynamic namespace, as Asnity's
//   one namespace per community), every CONNECT admitted;
// - "join" {channels: [...]}: socket.join(each channel); no ack, as Satchel;
// - "chat" {chatType: "new", channelId, content} with an ack: content over
//   300 characters acks {written: false} (as Asnity does, and nothing is
//   sent to the room); otherwise a chatInfo of the same shape and key order
//   as Satchel's is built, acked {written: true, chatInfo} and emitted to
//   the room minus the sender: socket.to(channelId).emit("new-chat", chatInfo).
//
// socket.io encodes a room emit once and writes the pre-encoded websocket
// frame to every socket of the room (socket.io-adapter's broadcast): its
// fastest path. Heartbeats are set long (argv) so that idle load generator
// connections need not answer pings; the load generator answers them anyway.
//
// Usage: node server.js PORT [PING_INTERVAL_MS PING_TIMEOUT_MS]
//        (0 picks a port; prints "listening on N")
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[2] || 0);
const pingInterval = Number(process.argv[3] || 600000);
const pingTimeout = Number(process.argv[4] || 600000);
const SENDER_ID = '000000000000000000000000'; // a 24-hex user id, as Satchel's
const MAX_CONTENT = 300; // Asnity's socket chat limit

const httpServer = http.createServer();
const io = new Server(httpServer, {
  pingInterval,
  pingTimeout,
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  cors: { origin: '*' },
});

let nextId = 0;
const communities = io.of(/^\/socket\/commu-.+$/);
communities.on('connection', (socket) => {
  const communityId = socket.nsp.name.slice('/socket/commu-'.length);
  socket.on('join', (data) => {
    const channels = data && Array.isArray(data.channels) ? data.channels : [];
    for (const channel of channels) {
      if (typeof channel === 'string') socket.join(channel);
    }
  });
  socket.on('chat', (data, ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    if (!data || typeof data !== 'object') return reply({ written: false });
    const content = data.content;
    if (typeof content === 'string' && content.length > MAX_CONTENT) return reply({ written: false });
    if (data.chatType !== 'new' || typeof data.channelId !== 'string' || typeof content !== 'string') {
      return reply({ written: false });
    }
    const now = new Date().toISOString();
    const chatInfo = {
      type: 'TEXT', content, senderId: SENDER_ID, channelId: data.channelId, id: nextId++,
      communityId, createdAt: now, updatedAt: now,
    };
    reply({ written: true, chatInfo });
    socket.to(data.channelId).emit('new-chat', chatInfo);
  });
});

httpServer.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  console.log('listening on ' + httpServer.address().port);
});
