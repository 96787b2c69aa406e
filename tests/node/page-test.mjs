// The browser pages in a real headless Chromium (Debian's, driven by
// playwright-core), with real `nc` clients as the other people:
//
// - the chat page at 1280 px (alice) and at 390 px (bob, who reaches the
//   server through a TCP proxy this script can cut, as a network would):
//   nick by /nick, remembered across a reload and carried by the welcome; a
//   taken nick; two rooms; history on join and scrolled back; a direct message
//   in its own pane; unread counts; own messages marked and grouped; peer HTML
//   shown as text; slash commands; keyboard only; the one-column layout; dark
//   mode; Chromium's idle preconnects are nobody in `/who`; and bob's
//   connection dropped and restored: every message once, none lost.
// - the diary page: a new `nc` shows up within 2 s and goes when it leaves;
//   a short HTTP request comes and goes.
//
// Prints `page: ok` and saves screenshots into SHOTS_DIR.
//
//   node tests/node/page-test.mjs PORT SHOTS_DIR TOKEN ADMIN_TOKEN
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [port, shots, token, adminToken] = process.argv.slice(2);
const origin = `http://127.0.0.1:${port}`;
const fail = (message) => { console.error(`page-test: error: ${message}`); process.exit(1); };
const step = (message) => console.error(`page-test: ${message}`);
setTimeout(() => fail('timed out'), 170000).unref();
const WAIT = 15000;

// ---------- real nc clients ----------

class Nc {
  constructor(name) {
    this.name = name;
    this.lines = [];
    this.waiters = [];
    this.closed = false;
    this.child = spawn('nc', ['127.0.0.1', port], { stdio: ['pipe', 'pipe', 'inherit'] });
    let partial = '';
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk) => {
      partial += chunk;
      const parts = partial.split('\n');
      partial = parts.pop();
      this.lines.push(...parts);
      this.wake();
    });
    this.child.on('exit', () => { this.closed = true; this.wake(); });
  }

  wake() { for (const waiter of this.waiters.splice(0)) waiter(); }

  send(line) { this.child.stdin.write(`${line}\n`); }

  // Says /quit and ends its input, as a user leaving nc does.
  quit() {
    this.send('/quit');
    this.child.stdin.end();
  }

  // Waits for a line `wanted` accepts (a string: that exact line), skipping others.
  async until(wanted, timeout = WAIT) {
    const test = typeof wanted === 'string' ? (l) => l === wanted : wanted;
    const deadline = Date.now() + timeout;
    for (;;) {
      const at = this.lines.findIndex(test);
      if (at >= 0) return this.lines.splice(0, at + 1)[at];
      if (this.closed) fail(`${this.name}: closed before ${wanted}; got ${JSON.stringify(this.lines)}`);
      const left = deadline - Date.now();
      if (left <= 0) fail(`${this.name}: no ${wanted} within ${timeout} ms; got ${JSON.stringify(this.lines)}`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  async exited(timeout = WAIT) {
    const deadline = Date.now() + timeout;
    while (!this.closed) {
      if (Date.now() > deadline) fail(`${this.name} did not exit`);
      await new Promise((resolve) => { this.waiters.push(resolve); setTimeout(resolve, 100); });
    }
  }

  // Gives the token and takes `nick`: a member of #lobby.
  async enter(nick) {
    await this.until('* this server needs a token: send /auth TOKEN');
    this.send(`/auth ${token}`);
    await this.until((l) => l.startsWith('* welcome '));
    this.send(`/nick ${nick}`);
    await this.until(`* you are now known as ${nick}`);
  }
}

// ---------- a TCP proxy whose connections this script can cut ----------

class Proxy {
  constructor() {
    this.down = false;
    this.pairs = new Set();
    this.server = net.createServer((client) => {
      if (this.down) { client.destroy(); return; }
      const upstream = net.connect(Number(port), '127.0.0.1');
      const pair = [client, upstream];
      this.pairs.add(pair);
      client.pipe(upstream);
      upstream.pipe(client);
      const end = () => { client.destroy(); upstream.destroy(); this.pairs.delete(pair); };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
  }

  listen() { return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => resolve(this.server.address().port))); }

  // Every connection through the proxy breaks, and new ones are refused.
  cut() {
    this.down = true;
    for (const [client, upstream] of this.pairs) { client.destroy(); upstream.destroy(); }
    this.pairs.clear();
  }

  restore() { this.down = false; }
}

async function post(room, from, text) {
  const reply = await fetch(`${origin}/api/rooms/${room}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ from, text }),
  });
  if (reply.status !== 201) fail(`POST answered ${reply.status}`);
}

// ---------- the browser ----------

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const dialogs = [];

async function open(url, viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('dialog', async (dialog) => { dialogs.push(dialog.message()); await dialog.dismiss(); });
  page.on('pageerror', (err) => fail(`script error in the page: ${err.message}`));
  await page.goto(url);
  await online(page);
  return page;
}

const online = (page) => page.waitForSelector('#conn[data-state="online"]', { timeout: WAIT });
const until = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: WAIT });
const nickIs = (page, nick) => until(page, (n) => document.querySelector('#me').textContent === n, nick);
const noticeHas = (page, text) => until(page, (t) => !document.querySelector('#notice').hidden
  && document.querySelector('#notice').textContent.includes(t), text);

// Types `text` into the message box with the keyboard and presses Enter.
async function type(page, text) {
  await page.focus('#text');
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
}

// Empties the message box with the keyboard.
async function clear(page) {
  await page.focus('#text');
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Backspace');
}

// The visible pane's messages as "from: text".
const shown = (page) => page.$$eval('.log:not([hidden]) .msg', (rows) => rows.map((r) => `${r.querySelector('.from').textContent}: ${r.querySelector('.text').textContent}`));
const sees = (page, line) => until(page, (l) => [...document.querySelectorAll('.log:not([hidden]) .msg')]
  .some((r) => `${r.querySelector('.from').textContent}: ${r.querySelector('.text').textContent}` === l), line);
const systemSays = (page, text) => until(page, (t) => [...document.querySelectorAll('.log:not([hidden]) .sys')]
  .some((r) => r.textContent.includes(t)), text);
const paneTitle = (page, title) => until(page, (t) => document.querySelector('#title').textContent === t, title);

async function countIn(page, key, line) {
  return page.$$eval('.log .msg', (rows, [k, l]) => rows.filter((r) => r.closest('.log').getAttribute('aria-label').includes(k)
    && `${r.querySelector('.from').textContent}: ${r.querySelector('.text').textContent}` === l).length, [key, line]);
}

// ---- before anyone opens the page: nc in two rooms, history to load ----
step('nc joins #lobby and #dev');
const nc = new Nc('nc');
await nc.enter('nc');
nc.send('/join #dev');
await nc.until('* nc joined #dev');
nc.send('dev history from nc');
await nc.until('[#dev] nc: dev history from nc');
nc.send('/join #lobby');     // back to #lobby as the room plain lines go to
await nc.until('* nc joined #lobby');
for (let n = 1; n <= 120; n += 1) await post('archive', 'archivist', `archive ${n}`);

// ---- alice at 1280 px: takes her nick with /nick, keyboard only ----
step('alice opens the page at 1280 px');
const alice = await open(`${origin}/?token=${token}`, { width: 1280, height: 800 });
await until(alice, () => document.activeElement === document.querySelector('#text'));
await alice.keyboard.type('/nick alice');
await alice.keyboard.press('Enter');
await nickIs(alice, 'alice');
await noticeHas(alice, 'you are now known as alice');
step('alice reloads: the page remembers her nick and the welcome carries it');
await alice.reload();
await online(alice);
await nickIs(alice, 'alice');
if (!await alice.$eval('#notice', (n) => n.hidden)) fail('a notice after a clean reload');

// ---- bob at 390 px, through a proxy this script can cut ----
step('bob opens the page at 390 px through the proxy');
const proxy = new Proxy();
const proxyPort = await proxy.listen();
const bob = await open(`http://127.0.0.1:${proxyPort}/?token=${token}`, { width: 390, height: 844 });
const bobSockets = [];
bob.on('websocket', (ws) => bobSockets.push(ws.url()));
await type(bob, '/nick alice');
await noticeHas(bob, 'nick alice is taken');
if ((await bob.$eval('#me', (m) => m.textContent)).toLowerCase() === 'alice') fail('bob shown as alice');
await type(bob, '/nick bob');
await nickIs(bob, 'bob');

// ---- nobody else: Chromium's spare connections are not members ----
step('who: only the three people');
nc.send('/who');
await nc.until('* #lobby (3): alice, bob, nc');
await type(alice, '/who');
await systemSays(alice, '#lobby (3): alice, bob, nc');

// ---- a conversation in #lobby ----
step('chat in #lobby');
await type(alice, 'hello from alice');
await type(alice, 'and a second line');
await nc.until('[#lobby] alice: hello from alice');
await sees(bob, 'alice: hello from alice');
await type(bob, 'hi from bob');
await sees(alice, 'bob: hi from bob');
nc.send('hello from nc');
await sees(alice, 'nc: hello from nc');
await sees(bob, 'nc: hello from nc');
const marks = await alice.$$eval('.log:not([hidden]) .msg', (rows) => rows.map((r) => ({
  text: r.querySelector('.text').textContent, mine: r.classList.contains('mine'),
  cont: r.classList.contains('cont'), time: r.querySelector('time').textContent,
})));
const first = marks.find((m) => m.text === 'hello from alice');
const second = marks.find((m) => m.text === 'and a second line');
const theirs = marks.find((m) => m.text === 'hi from bob');
if (!first.mine || !second.mine || theirs.mine) fail(`own messages not marked right: ${JSON.stringify(marks)}`);
if (first.cont || !second.cont) fail(`consecutive messages not grouped: ${JSON.stringify(marks)}`);
if (!/\d/.test(first.time)) fail(`no timestamp: ${JSON.stringify(first)}`);
if (await bob.$$eval('.msg.mine .text', (rows) => rows.some((r) => r.textContent === 'hello from alice'))) fail('alice\'s message marked as bob\'s own');

step('peer HTML is text');
const attack = '<img src=x onerror=alert(1)><b>bold</b>';
nc.send(attack);
await sees(alice, `nc: ${attack}`);
await sees(bob, `nc: ${attack}`);
for (const page of [alice, bob]) {
  if (await page.$('.log img, .log b')) fail('a peer\'s text was rendered as HTML');
}

// ---- two rooms: history on join, unread counts, keyboard switching ----
step('alice joins #dev and sees its history');
await type(alice, '/join #dev');
await paneTitle(alice, '#dev');
await sees(alice, 'nc: dev history from nc');
await type(alice, 'alice in dev');
await nc.until('[#dev] alice: alice in dev');
nc.send('lobby while alice is in dev');
await until(alice, () => [...document.querySelectorAll('nav .conv')].some((b) => b.dataset.key === '#lobby' && b.querySelector('.badge')?.textContent === '1'));
if (await countIn(bob, '#dev', 'alice: alice in dev')) fail('a #dev message reached bob, who is not in #dev');
step('alice switches rooms with Alt+Up and by Tab to the room list');
await alice.focus('#text');
await alice.keyboard.press('Alt+ArrowUp');
await paneTitle(alice, '#lobby');
await sees(alice, 'nc: lobby while alice is in dev');
await until(alice, () => !document.querySelector('nav .conv[data-key="#lobby"] .badge'));
await alice.focus('#text');
let reached = false;
for (let i = 0; i < 30 && !reached; i += 1) {
  await alice.keyboard.press('Shift+Tab');
  reached = await alice.evaluate(() => document.activeElement?.dataset?.key === '#dev');
}
if (!reached) fail('the #dev button cannot be reached with Tab');
await alice.keyboard.press('Enter');
await paneTitle(alice, '#dev');
if (!await alice.evaluate(() => document.activeElement === document.querySelector('#text'))) fail('focus did not go back to the message box');

// ---- direct messages land in their own pane ----
step('direct messages');
await type(alice, '/msg bob psst');
await paneTitle(alice, '@bob');
await sees(alice, 'alice: psst');
await until(bob, () => [...document.querySelectorAll('#switcher option')].some((o) => o.textContent === '@alice (1 new)'));
if (await countIn(bob, '#lobby', 'alice: psst')) fail('the direct message landed in #lobby');
await bob.focus('#text');
await bob.keyboard.press('Alt+ArrowDown');
await paneTitle(bob, '@alice');
await sees(bob, 'alice: psst');
await type(bob, 'hey alice');
await sees(alice, 'bob: hey alice');
nc.send('/msg alice from nc privately');
await until(alice, () => document.querySelector('nav .conv[data-key="@nc"] .badge')?.textContent === '1');

// ---- slash commands with the line protocol's meaning ----
step('slash commands');
await alice.focus('#text');
await alice.keyboard.press('Alt+ArrowUp');     // from @bob to #lobby
await alice.keyboard.press('Alt+ArrowUp');     // and to #dev
await paneTitle(alice, '#dev');
await type(alice, '/help');
await systemSays(alice, '/nick NAME');
await type(alice, '/frobnicate');
await noticeHas(alice, 'unknown command /frobnicate - type /help');
if (await alice.$eval('#text', (t) => t.value) !== '/frobnicate') fail('a refused command was not left in the box');
await clear(alice);
await type(alice, '/msg bob');
await noticeHas(alice, 'usage: /msg NICK TEXT');
await clear(alice);
await type(alice, '//me waves');
await nc.until('[#dev] alice: /me waves');
await type(alice, '/part');
await nc.until('* alice left #dev');
await until(alice, () => !document.querySelector('nav .conv[data-key="#dev"]'));

// ---- scroll-back through a long history ----
step('history scrolled back on demand');
await type(alice, '/join #archive');
await paneTitle(alice, '#archive');
await sees(alice, 'archivist: archive 120');
if ((await shown(alice)).length !== 50) fail(`joined with ${(await shown(alice)).length} messages, not the newest 50`);
await alice.focus('.log:not([hidden]) .older');
await alice.keyboard.press('Enter');
await sees(alice, 'archivist: archive 21');
await alice.evaluate(() => { document.querySelector('.log:not([hidden])').scrollTop = 0; });
await sees(alice, 'archivist: archive 1');
await until(alice, () => document.querySelector('.log:not([hidden]) .start')?.textContent === 'the beginning of #archive');
const archive = await shown(alice);
const expected = Array.from({ length: 120 }, (_, i) => `archivist: archive ${i + 1}`);
if (JSON.stringify(archive) !== JSON.stringify(expected)) fail(`#archive is not 1..120 once each: ${archive.length} rows`);

// ---- bob's connection drops; the room goes on; he comes back ----
step('bob\'s connection is cut');
await bob.keyboard.press('Alt+ArrowUp');
await paneTitle(bob, '#lobby');
const lastSeen = await bob.$$eval('.log[aria-label="Messages in #lobby"] .msg', (rows) => Math.max(...rows.map((r) => Number(r.dataset.id))));
proxy.cut();
await bob.waitForSelector('#conn[data-state="offline"]', { timeout: WAIT });
nc.send('while you were away 1');
await nc.until('[#lobby] nc: while you were away 1');
await post('lobby', 'poster', 'while you were away 2');
await alice.focus('#text');
await alice.keyboard.press('Alt+ArrowDown');   // from #archive to #lobby
await paneTitle(alice, '#lobby');
await type(alice, 'while you were away 3');
await nc.until('[#lobby] alice: while you were away 3');
await type(bob, 'typed while offline');
await noticeHas(bob, 'not connected');
if (await bob.$eval('#text', (t) => t.value) !== 'typed while offline') fail('text typed offline was lost');
step('the proxy is back: bob reconnects with since');
proxy.restore();
await online(bob);
await nickIs(bob, 'bob');
const back = new URL(bobSockets.at(-1));
if (back.searchParams.get('since') !== String(lastSeen) || back.searchParams.get('nick') !== 'bob') {
  fail(`bob came back as ${back.search}, not with since=${lastSeen} and his nick`);
}
for (const n of [1, 2, 3]) {
  const from = { 1: 'nc', 2: 'poster', 3: 'alice' }[n];
  await sees(bob, `${from}: while you were away ${n}`);
}
await bob.focus('#text');
await bob.keyboard.press('Enter');
await nc.until('[#lobby] bob: typed while offline');
await sees(bob, 'bob: typed while offline');
for (const line of ['alice: hello from alice', 'nc: hello from nc', 'bob: hi from bob', 'nc: while you were away 1',
  'poster: while you were away 2', 'alice: while you were away 3', 'bob: typed while offline']) {
  const seen = await countIn(bob, '#lobby', line);
  if (seen !== 1) fail(`bob sees "${line}" ${seen} times`);
}
nc.send('/who');
await nc.until('* #lobby (3): alice, bob, nc');

// ---- layouts: two columns at 1280 px, one at 390 px; dark mode ----
step('layouts');
const wide = await alice.evaluate(() => ({
  nav: getComputedStyle(document.querySelector('nav')).display,
  members: [...document.querySelectorAll('#members li')].map((li) => li.textContent),
  switcher: getComputedStyle(document.querySelector('#switcher')).display,
}));
if (wide.nav === 'none' || wide.switcher !== 'none') fail(`1280 px layout: ${JSON.stringify(wide)}`);
for (const nick of ['alice', 'bob', 'nc']) if (!wide.members.includes(nick)) fail(`${nick} missing from members ${wide.members}`);
const narrow = await bob.evaluate(() => ({
  nav: getComputedStyle(document.querySelector('nav')).display,
  members: getComputedStyle(document.querySelector('#members-pane')).display,
  switcher: document.querySelector('#switcher').getBoundingClientRect().width,
  main: document.querySelector('main').getBoundingClientRect().width,
  overflow: document.documentElement.scrollWidth,
}));
if (narrow.nav !== 'none' || narrow.members !== 'none' || narrow.switcher < 100 || narrow.main < 380 || narrow.overflow > 390) {
  fail(`390 px layout is not one column: ${JSON.stringify(narrow)}`);
}
await bob.screenshot({ path: path.join(shots, 'chat-390.png') });
await alice.screenshot({ path: path.join(shots, 'chat-1280.png') });
await alice.emulateMedia({ colorScheme: 'dark' });
const background = await alice.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
const [r, g, b] = background.match(/\d+/g).map(Number);
if (r + g + b > 150) fail(`dark mode background is ${background}`);
await alice.screenshot({ path: path.join(shots, 'chat-dark.png') });
await alice.emulateMedia({ colorScheme: 'light' });

// ---- a second tab of alice's: her nick is taken, and the page says so ----
step('a second tab asks for a nick someone has');
const again = await alice.context().newPage();
again.on('pageerror', (err) => fail(`script error in the page: ${err.message}`));
await again.goto(`${origin}/?token=${token}`);
await online(again);
await noticeHas(again, 'nick alice is taken: you are guest-');
if (!(await again.$eval('#me', (m) => m.textContent)).startsWith('guest-')) fail('the second tab does not say it is a guest');
await again.close();

// ---- the diary page ----
step('the diary page');
const diary = await browser.newPage({ viewport: { width: 1280, height: 800 } });
diary.on('pageerror', (err) => fail(`script error in the diary: ${err.message}`));
await diary.goto(`${origin}/diary?token=${adminToken}`);
await diary.waitForSelector('#status[data-state="live"]', { timeout: WAIT });
await until(diary, () => [...document.querySelectorAll('#rows tr')].some((tr) => tr.dataset.nick === 'alice' && tr.dataset.transport === 'ws'));
await diary.evaluate(() => {
  window.seen = [];
  new MutationObserver(() => {
    for (const tr of document.querySelectorAll('#rows tr')) {
      window.seen.push(`${tr.dataset.transport} ${tr.cells[8].textContent} ${tr.className}`);
    }
  }).observe(document.querySelector('#rows'), { childList: true, subtree: true, attributes: true });
});
const visitor = new Nc('visitor');
const arrived = Date.now();
await visitor.enter('visitor');
await diary.waitForFunction(() => [...document.querySelectorAll('#rows tr')]
  .some((tr) => tr.dataset.nick === 'visitor' && tr.dataset.transport === 'tcp' && !tr.classList.contains('gone')), null, { timeout: 2000 });
step(`the diary showed visitor after ${Date.now() - arrived} ms`);
await diary.screenshot({ path: path.join(shots, 'diary.png'), fullPage: true });
visitor.quit();
await visitor.exited();
const left = Date.now();
await diary.waitForFunction(() => ![...document.querySelectorAll('#rows tr')]
  .some((tr) => tr.dataset.nick === 'visitor' && !tr.classList.contains('gone')), null, { timeout: 2000 });
step(`the diary let visitor go after ${Date.now() - left} ms`);
const curl = spawn('curl', ['-s', '-o', '/dev/null', `${origin}/healthz`]);
await new Promise((resolve) => curl.on('exit', resolve));
await diary.waitForFunction(() => window.seen.some((s) => s.startsWith('http GET /healthz')), null, { timeout: 2000 });
await diary.waitForFunction(() => window.seen.some((s) => s.startsWith('http GET /healthz') && s.endsWith('gone')), null, { timeout: 4000 });

if (dialogs.length) fail(`a dialog opened: ${dialogs}`);
nc.quit();
await nc.until('* bye');
await browser.close();
console.log('page: ok');
process.exit(0);
