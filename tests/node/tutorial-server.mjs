// The Node.js `net` tutorial's echo server, as written there, except that it
// takes its port from the command line (0 lets the OS choose), prints the
// `listening on ADDR:PORT` line scripts wait for, and logs to stderr.
//
//   node tests/node/tutorial-server.mjs [PORT]
import net from 'node:net';

const port = Number(process.argv[2] ?? 3000);

const server = net.createServer((socket) => {
  console.error('Client connected');

  socket.on('data', (data) => {
    socket.write(`Echo: ${data}`);
  });

  socket.on('end', () => {
    console.error('Client disconnected');
  });

  socket.on('error', (err) => {
    console.error(`socket error: ${err.message}`);
  });
});

server.listen(port, '127.0.0.1', () => {
  const { address, port: bound } = server.address();
  console.log(`listening on ${address}:${bound}`);
});
