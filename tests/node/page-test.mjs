// The browser page in a real headless Chromium (Debian's, driven by
// playwright-core): two tabs chat with each other and with an `nc` client that
// the Rust test drives, peer text is shown as text (never HTML), and a tab
// whose WebSocket drops reconnects with `since`, missing nothing and doubling
// nothing. The server asks for TOKEN, which the page takes from its own URL.
// Prints `page: ok` and saves a screenshot.
//
//   node tests/node/page-test.mjs PORT SCREENSHOT.png TOKEN
import { chromium } from 'playwright-core';

const [port, screenshot, token] = process.argv.slice(2);
const base = `http://127.0.0.1:${port}/?token=${encodeURIComponent(token)}`;
const fail = (message) => { console.error(`error: ${message}`); process.exit(1); };
setTimeout(() => fail('timed out'), 60000).unref();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const dialogs = [];

async function open(nick) {
  const page = await browser.newPage();
  page.on('dialog', async (dialog) => { dialogs.push(dialog.message()); await dialog.dismiss(); });
  await page.goto(base);
  await page.fill('#nick', nick);
  await page.click('#connect');
  await page.waitForFunction((n) => document.querySelector('#status').textContent.includes(`online as ${n}`), nick);
  return page;
}

const count = (page, text) => page.$$eval('#messages div', (divs, t) => divs.filter((d) => d.textContent === t).length, text);
const waitFor = (page, text) => page.waitForFunction(
  (t) => [...document.querySelectorAll('#messages div')].some((d) => d.textContent === t), text, { timeout: 20000 });

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

const alice = await open('alice');
const bob = await open('bob');

await say(alice, 'hello from alice');
await waitFor(bob, '[#lobby] alice: hello from alice');
await waitFor(alice, '[#lobby] nc: hello from nc');
await waitFor(bob, '[#lobby] nc: hello from nc');

const attack = '<img src=x onerror=alert(1)>';
await say(bob, attack);
await waitFor(alice, `[#lobby] bob: ${attack}`);
if (await alice.$('#messages img')) fail('a peer\'s text was rendered as HTML');

// Drop Bob's connection; a message arrives while he is away.
await bob.evaluate(() => state.ws.close());
await bob.waitForFunction(() => document.querySelector('#status').textContent.startsWith('offline'));
const posted = await alice.evaluate(() => fetch('/api/rooms/lobby/messages', {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
  body: JSON.stringify({ from: 'poster', text: 'while you were away' }),
}).then((r) => r.status));
if (posted !== 201) fail(`POST answered ${posted}`);
await bob.waitForFunction(() => document.querySelector('#status').textContent.startsWith('online'));
await waitFor(bob, '[#lobby] poster: while you were away');
await say(alice, 'after the reconnect');
await waitFor(bob, '[#lobby] alice: after the reconnect');
for (const text of ['[#lobby] poster: while you were away', '[#lobby] alice: hello from alice', '[#lobby] nc: hello from nc']) {
  const seen = await count(bob, text);
  if (seen !== 1) fail(`bob saw "${text}" ${seen} times`);
}
const members = await alice.$$eval('#members li', (items) => items.map((li) => li.textContent));
for (const nick of ['alice', 'bob', 'nc']) if (!members.includes(nick)) fail(`${nick} missing from members ${members}`);
// The room list comes from /api/rooms, fetched with the page's token.
await alice.waitForFunction(() => [...document.querySelectorAll('#rooms li')].some((li) => li.textContent === '#lobby (3)'));
if (dialogs.length) fail(`a dialog opened: ${dialogs}`);

await alice.screenshot({ path: screenshot, fullPage: true });
await browser.close();
console.log('page: ok');
