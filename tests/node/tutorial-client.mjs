// The Node.js `net` tutorial's client, as written there, with the port taken
// from the command line: connect to localhost, send a greeting, print the
// server's answer, end.
//
//   node tests/node/tutorial-client.mjs PORT
import net from 'node:net';

const port = Number(process.argv[2] ?? 3000);

const client = net.createConnection({ port, host: 'localhost' }, () => {
  console.log('Connected to server');
  client.write('Hello from client!');
});

client.on('data', (data) => {
  console.log(`Server says: ${data}`);
  client.end();
});

client.on('end', () => {
  console.log('Disconnected from server');
});

client.on('error', (err) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
