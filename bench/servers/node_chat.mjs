// The reference chat hub for `switchboard bench chat`: what a Node.js
// developer would write with `net` and the `ws` package. It speaks the same
// line protocol (raw TCP, greeting after 250 ms of silence) and JSON protocol
// (after `/json`, or WebSocket at /ws) as `switchboard serve`, on one port.
//
//   npm install --prefix bench && node bench/servers/node_chat.mjs [PORT]
import http from 'node:http';
import net from 'node:net';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2] ?? 8080);
const PRESENCE_LIMIT = 100;
const RATE = 20;
const BURST = 50;
const MAX_LINE = 8192;

const rooms = new Map(); // name -> { members: Set<client>, nextId, history: [] }
const nicks = new Map(); // lower-case nick -> client
let guests = 0;
let dmIds = 0;

const validName = (name, max) => name.length >= 1 && name.length <= max && /^[A-Za-z0-9_-]+$/.test(name);
const roomName = (raw) => {
  const bare = raw.startsWith('#') ? raw.slice(1) : raw;
  return validName(bare, 64) ? bare.toLowerCase() : null;
};

function room(name) {
  if (!rooms.has(name)) rooms.set(name, { members: new Set(), nextId: 1, history: [] });
  return rooms.get(name);
}

// One connected user, whatever the transport; `send(event)` writes it in the
// client's format.
class Client {
  constructor(fd, write) {
    this.fd = fd;
    this.write = write;
    this.json = false;
    this.rooms = [];
    this.tokens = BURST;
    this.refilled = Date.now();
    do { this.nick = `guest-${++guests}`; } while (nicks.has(this.nick));
    nicks.set(this.nick, this);
  }

  admit() {
    const now = Date.now();
    this.tokens = Math.min(BURST, this.tokens + ((now - this.refilled) / 1000) * RATE);
    this.refilled = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  send(event) {
    this.write(this.json ? JSON.stringify(event) : toLine(event));
  }
}

function toLine(e) {
  switch (e.type) {
    case 'welcome': return `* welcome ${e.nick} (fd ${e.fd}) - type /help`;
    case 'message': return `[#${e.room}] ${e.from}: ${e.text.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, '\ufffd')}`;
    case 'dm': return e.sent ? `* dm to ${e.to}: ${e.text}` : `[dm] ${e.from}: ${e.text}`;
    case 'joined': return `* ${e.nick} joined #${e.room}`;
    case 'parted': return `* ${e.nick} left #${e.room}`;
    case 'nick': return e.from ? `* ${e.from} is now known as ${e.nick}` : `* you are now known as ${e.nick}`;
    case 'who': return `* #${e.room} (${e.nicks.length}): ${e.nicks.join(', ')}`;
    case 'rooms': return `* rooms: ${e.rooms.map((r) => `#${r.room} (${r.members})`).join(', ')}`;
    case 'history': return [`* history of #${e.room}: ${e.messages.length} messages`, ...e.messages.map(toLine)].join('\n');
    case 'error': return `! ${e.message}`;
    case 'notice': return `* ${e.text}`;
    default: return null;
  }
}

const error = (code, message, ref) => ({ type: 'error', code, message, ...(ref !== undefined && { ref }) });

function broadcast(name, event, except) {
  for (const member of room(name).members) if (member !== except) member.send(event);
}

function join(client, raw, since, ref) {
  const name = roomName(raw);
  if (!name) return client.send(error('invalid_room', 'a room name is 1 to 64 letters, digits, \'_\' or \'-\' (written #name)', ref));
  const r = room(name);
  const already = r.members.has(client);
  r.members.add(client);
  client.rooms = client.rooms.filter((x) => x !== name).concat(name);
  if (!already && r.members.size <= PRESENCE_LIMIT) broadcast(name, { type: 'joined', room: name, nick: client.nick }, client);
  client.send({ type: 'joined', room: name, nick: client.nick, ...(ref !== undefined && { ref }) });
  if (since !== undefined) for (const m of r.history) if (m.id > since) client.send(m);
}

function leave(client, name) {
  const r = room(name);
  r.members.delete(client);
  client.rooms = client.rooms.filter((x) => x !== name);
  if (r.members.size < PRESENCE_LIMIT) broadcast(name, { type: 'parted', room: name, nick: client.nick });
}

function say(client, raw, text, ref) {
  const name = raw === undefined ? client.rooms.at(-1) : roomName(raw);
  if (!name || !room(name).members.has(client)) return client.send(error('not_in_room', 'you are not in a room: /join one', ref));
  if (!text) return client.send(error('empty_text', 'empty message', ref));
  const r = room(name);
  const message = { type: 'message', room: name, id: r.nextId++, from: client.nick, text, ts: new Date().toISOString() };
  r.history.push(message);
  if (r.history.length > 10000) r.history.shift();
  if (client.json) client.send({ type: 'ack', id: message.id, ...(ref !== undefined && { ref }) });
  broadcast(name, message);
}

function handle(client, request) {
  const ref = request.ref;
  switch (request.type) {
    case 'nick': {
      const nick = request.nick;
      if (typeof nick !== 'string' || !validName(nick, 32)) return client.send(error('invalid_nick', "a nick is 1 to 32 letters, digits, '_' or '-'", ref));
      const owner = nicks.get(nick.toLowerCase());
      if (owner && owner !== client) return client.send(error('nick_taken', `nick ${nick} is taken`, ref));
      const old = client.nick;
      nicks.delete(old.toLowerCase());
      nicks.set(nick.toLowerCase(), client);
      client.nick = nick;
      for (const name of client.rooms) if (room(name).members.size <= PRESENCE_LIMIT) broadcast(name, { type: 'nick', from: old, nick }, client);
      return client.send(client.json ? { type: 'ack', nick, ...(ref !== undefined && { ref }) } : { type: 'nick', nick });
    }
    case 'join': return join(client, request.room ?? '', request.since, ref);
    case 'part': {
      const name = request.room === undefined ? client.rooms.at(-1) : roomName(request.room);
      if (!name || !room(name).members.has(client)) return client.send(error('not_in_room', `you are not in #${name}`, ref));
      leave(client, name);
      return client.send({ type: 'parted', room: name, nick: client.nick, ...(ref !== undefined && { ref }) });
    }
    case 'say': return say(client, request.room, request.text, ref);
    case 'dm': {
      const to = nicks.get(String(request.to).toLowerCase());
      if (!to) return client.send(error('no_such_nick', `no such nick: ${request.to}`, ref));
      const dm = { type: 'dm', id: ++dmIds, from: client.nick, to: to.nick, text: request.text, ts: new Date().toISOString() };
      to.send(dm);
      client.send({ ...dm, sent: !client.json });
      if (client.json) client.send({ type: 'ack', id: dm.id, ...(ref !== undefined && { ref }) });
      return undefined;
    }
    case 'who': {
      const name = request.room === undefined ? client.rooms.at(-1) : roomName(request.room);
      const members = name ? [...room(name).members].map((c) => c.nick).sort() : [];
      return client.send({ type: 'who', room: name, nicks: members, ...(ref !== undefined && { ref }) });
    }
    case 'history': {
      const name = request.room === undefined ? client.rooms.at(-1) : roomName(request.room);
      const messages = name ? room(name).history.slice(-(request.limit ?? 50)) : [];
      return client.send({ type: 'history', room: name, messages, ...(ref !== undefined && { ref }) });
    }
    case 'rooms':
      return client.send({ type: 'rooms', rooms: [...rooms].filter(([, r]) => r.members.size).map(([room, r]) => ({ room, members: r.members.size })) });
    default: return client.send(error('unknown_type', `unknown type '${request.type}'`, ref));
  }
}

// A line typed by an `nc` user, as a request.
function parseLine(line) {
  if (!line.startsWith('/')) return { type: 'say', text: line };
  if (line.startsWith('//')) return { type: 'say', text: line.slice(1) };
  const [word, ...rest] = line.slice(1).split(' ');
  const arg = rest.join(' ').trim();
  switch (word.toLowerCase()) {
    case 'nick': return { type: 'nick', nick: arg };
    case 'join': return { type: 'join', room: arg };
    case 'part': return { type: 'part', ...(arg && { room: arg }) };
    case 'who': return { type: 'who', ...(arg && { room: arg }) };
    case 'rooms': return { type: 'rooms' };
    case 'msg': { const [to, ...text] = rest; return { type: 'dm', to, text: text.join(' ') }; }
    case 'history': return { type: 'history', limit: Number(arg || 20) };
    case 'json': return { type: 'json' };
    case 'quit': return { type: 'quit' };
    default: return { type: 'unknown', word };
  }
}

function disconnect(client) {
  for (const name of [...client.rooms]) leave(client, name);
  if (nicks.get(client.nick.toLowerCase()) === client) nicks.delete(client.nick.toLowerCase());
}

function serveLine(socket) {
  socket.setNoDelay(true);
  const client = new Client(socket._handle?.fd ?? -1, (text) => { if (text !== null) socket.write(`${text}\n`); });
  client.send({ type: 'welcome', nick: client.nick, fd: client.fd });
  join(client, 'lobby');
  let pending = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk) => {
    pending += chunk;
    let end;
    while ((end = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, end).replace(/\r$/, '');
      pending = pending.slice(end + 1);
      if (!line) continue;
      if (!client.admit()) { client.send(error('rate_limited', 'slow down', undefined)); continue; }
      if (line.length > MAX_LINE) { client.send(error('too_long', `line too long (limit ${MAX_LINE} bytes): dropped`)); continue; }
      let request;
      if (client.json) {
        try { request = JSON.parse(line); } catch { client.send(error('bad_json', 'not valid JSON')); continue; }
      } else {
        request = parseLine(line);
        if (request.type === 'json') { client.json = true; client.send({ type: 'welcome', nick: client.nick, fd: client.fd }); continue; }
        if (request.type === 'quit') { client.send({ type: 'notice', text: 'bye' }); socket.end(); continue; }
        if (request.type === 'unknown') { client.send(error('unknown_command', `unknown command /${request.word} - type /help`)); continue; }
      }
      handle(client, request);
    }
  });
  socket.on('close', () => disconnect(client));
  socket.on('error', () => {});
}

const httpServer = http.createServer((req, res) => {
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { code: 'not_found', message: 'no such path' } }));
});
const wss = new WebSocketServer({ noServer: true });
httpServer.on('upgrade', (req, socket, head) => {
  if (!req.url.startsWith('/ws')) return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => {
    const client = new Client(socket._handle?.fd ?? -1, (text) => ws.send(text));
    client.json = true;
    client.send({ type: 'welcome', nick: client.nick, fd: client.fd });
    join(client, 'lobby');
    ws.on('message', (data) => {
      if (!client.admit()) return client.send(error('rate_limited', 'slow down'));
      let request;
      try { request = JSON.parse(data); } catch { return client.send(error('bad_json', 'not valid JSON')); }
      handle(client, request);
    });
    ws.on('close', () => disconnect(client));
  });
});

// One port: an HTTP request line goes to HTTP/WebSocket, anything else (or
// 250 ms of silence) is a line client.
const server = net.createServer({ pauseOnConnect: true }, (socket) => {
  let decided = false;
  const decide = (first) => {
    if (decided) return;
    decided = true;
    clearTimeout(timer);
    if (first && /^(GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH) /.test(first.toString('latin1'))) {
      socket.unshift(first);
      httpServer.emit('connection', socket);
    } else {
      if (first) socket.unshift(first);
      serveLine(socket);
    }
    socket.resume();
  };
  const timer = setTimeout(() => decide(null), 250);
  socket.once('readable', () => decide(socket.read()));
  socket.resume();
  socket.pause();
  socket.on('error', () => {});
});

server.listen(port, () => {
  const { address, port: bound } = server.address();
  console.log(`listening on ${address.includes(':') ? `[${address}]` : address}:${bound}`);
});
