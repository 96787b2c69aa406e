// The Socket.IO reference for `switchboard bench chat socketio://HOST:PORT`:
// what a Node.js developer would write with Socket.IO 4. A client emits
// `join` with a room's name and gets `joined` back; `say` with
// `{ room, text }` goes to everyone in that room as `message`
// (`io.to(room).emit`). Given a Redis URL, it uses @socket.io/redis-adapter
// with the `redis` client, so several processes act as one server: a
// message said on one reaches the room's members on all of them.
//
//   npm install --prefix bench
//   node bench/servers/socketio_chat.mjs [PORT] [--redis redis://HOST:PORT]
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';
import { Server } from 'socket.io';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { redis: { type: 'string' } },
});
const port = Number(positionals[0] ?? 3000);

const httpServer = createServer();
const io = new Server(httpServer);

if (values.redis) {
  const pubClient = createClient({ url: values.redis });
  const subClient = pubClient.duplicate();
  for (const client of [pubClient, subClient]) client.on('error', (err) => console.error('redis:', err.message));
  await Promise.all([pubClient.connect(), subClient.connect()]);
  io.adapter(createAdapter(pubClient, subClient));
}

io.on('connection', (socket) => {
  socket.on('join', (room) => {
    socket.join(room);
    socket.emit('joined', room);
  });
  socket.on('say', ({ room, text } = {}) => {
    if (socket.rooms.has(room)) io.to(room).emit('message', { room, from: socket.id, text });
  });
});

httpServer.listen(port, () => {
  const { address, port: bound } = httpServer.address();
  console.log(`listening on ${address.includes(':') ? `[${address}]` : address}:${bound}`);
});
