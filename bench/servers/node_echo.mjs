// Node.js echo servers for bench/run.sh, written the way Node code usually is.
//
//   node bench/servers/node_echo.mjs raw [PORT]       # socket.pipe(socket)
//   node bench/servers/node_echo.mjs tutorial [PORT]  # the tutorial's `Echo: ` handler,
//                                                     # without its per-message console.log
// Prints `listening on ADDR:PORT` first, like every server in the suite.
import net from 'node:net';

const [mode = 'raw', port = '0'] = process.argv.slice(2);

const server = net.createServer((socket) => {
  if (mode === 'raw') {
    socket.pipe(socket);
  } else {
    socket.on('data', (data) => {
      socket.write(`Echo: ${data}`);
    });
  }
  socket.on('error', () => {});
});

server.listen(Number(port), () => {
  const { address, port: bound } = server.address();
  console.log(`listening on ${address.includes(':') ? `[${address}]` : address}:${bound}`);
});
