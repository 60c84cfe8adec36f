// Peer: a broadcast server on Node's `ws`, written the way its README shows
// ("Server broadcast": loop over the clients and send to each).
//
// It speaks the same small subset of Backpack as benches/peers/websockets_server.py:
// a greeting on connect; {"action":"join",channelType,channelId} joins a room
// (answered {"action":"joined"}); {"action":"broadcast",...} is relayed
// unchanged to the room it names, else to every connection.
//
// Usage: node server.js PORT   (0 picks one; prints "listening on N")
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const GREETING = '{"action":"connection","response":"Websocket connection established"}';
const port = Number(process.argv[2] || 0);
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, backlog: 4096 });
const rooms = new Map();

wss.on('connection', (ws) => {
  const joined = [];
  ws.send(GREETING);
  ws.on('message', (data, isBinary) => {
    const msg = JSON.parse(data);
    if (msg.action === 'broadcast') {
      let targets = wss.clients;
      if (msg.channelType != null && msg.channelId != null) {
        targets = rooms.get(msg.channelType + '\u0000' + msg.channelId) || [];
      }
      for (const client of targets) {
        if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
      }
    } else if (msg.action === 'join') {
      const key = msg.channelType + '\u0000' + msg.channelId;
      if (!rooms.has(key)) rooms.set(key, new Set());
      rooms.get(key).add(ws);
      joined.push(key);
      ws.send('{"action":"joined"}');
    }
  });
  ws.on('close', () => {
    for (const key of joined) {
      const room = rooms.get(key);
      if (room) room.delete(ws);
    }
  });
});

wss.on('listening', () => console.log('listening on ' + wss.address().port));
