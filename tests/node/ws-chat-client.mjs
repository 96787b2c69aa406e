// A chat client on Node's `ws` package for the interop test: joins through the
// URL, prints every room message as `from: text`, says its own line once it
// has seen the message from AFTER, and exits after COUNT messages.
//
//   node tests/node/ws-chat-client.mjs ws://HOST:PORT/ws?nick=node AFTER TEXT COUNT
import WebSocket from 'ws';

const [url, after, text, count] = process.argv.slice(2);
const ws = new WebSocket(url);
let seen = 0;
const deadline = setTimeout(() => { console.error('error: timed out'); process.exit(1); }, 20000);

ws.on('message', (data) => {
  const event = JSON.parse(data);
  if (event.type !== 'message') return;
  seen += 1;
  console.log(`${event.from}: ${event.text}`);
  if (event.from === after) ws.send(JSON.stringify({ type: 'say', room: event.room, text }));
  if (seen === Number(count)) { clearTimeout(deadline); ws.close(); }
});
ws.on('error', (err) => { console.error(`error: ${err.message}`); process.exit(1); });
