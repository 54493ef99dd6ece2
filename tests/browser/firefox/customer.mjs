// Debian's firefox-esr, headless, driven over WebDriver BiDi for the Python tests
// (tests/browser/firefox_support.py). One page; commands come as JSON lines on stdin,
// answers and events go out as JSON lines on stdout (logs on stderr).
//
//   in:  {"id": 1, "cmd": "goto", "url": "http://127.0.0.1:8000/customer/"}
//   out: {"id": 1, "ok": true, "value": null}   or   {"id": 1, "ok": false, "error": "..."}
//   out: {"event": "ready", "version": "firefox/153.0"}  once, after launch
//   out: {"event": "console", "type": "log", "text": "..."}  and  {"event": "pageerror", "text": "..."}
//
// Commands: viewport {width, height} · preload {source} (a function run before each document's
// own scripts) · goto {url} · click {selector, ms?} · wait {fn, args?, ms?} (until fn(...args) is
// truthy; returns its value) · eval {fn, args?} (returns fn(...args), awaited) ·
// screenshot {path} · close.  fn is a function's source text, e.g. "(sel) => !!document.querySelector(sel)".
import { createInterface } from 'node:readline';
import puppeteer from 'puppeteer-core';

// Fake camera and microphone without a prompt, and nothing that phones home. Firefox's WebRTC
// privacy defaults are left alone: host candidates stay obfuscated as <uuid>.local (mDNS).
// Puppeteer adds its own test profile (no updates, no telemetry upload, dummy service URLs).
const PREFS = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'toolkit.telemetry.enabled': false,
  'toolkit.telemetry.unified': false,
  'datareporting.usage.uploadEnabled': false,
  'app.update.auto': false,
  'browser.region.network.url': '',
  'browser.region.update.enabled': false,
  'extensions.blocklist.enabled': false,
  'browser.newtabpage.activity-stream.feeds.section.topstories': false,
  'network.dns.disablePrefetch': true,
  'network.prefetch-next': false,
};

const executablePath = process.env.FIREFOX || '/usr/bin/firefox-esr';

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fnFrom(source) {
  // the function is sent to the page by its source text; this only checks it parses
  return new Function(`return (${source});`)();
}

const browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath,
  headless: true,
  extraPrefsFirefox: PREFS,
  protocolTimeout: 60_000,
});
const page = (await browser.pages())[0] || (await browser.newPage());
page.setDefaultTimeout(20_000);
page.on('console', (msg) => send({ event: 'console', type: msg.type(), text: msg.text() }));
page.on('pageerror', (err) => send({ event: 'pageerror', text: String(err && (err.stack || err.message) || err) }));

async function close() {
  await browser.close().catch(() => {});
}

const commands = {
  viewport: ({ width, height }) => page.setViewport({ width, height }),
  preload: ({ source }) => page.evaluateOnNewDocument(fnFrom(source)).then(() => null),
  goto: ({ url }) => page.goto(url, { waitUntil: 'load' }).then(() => null),
  click: async ({ selector, ms }) => {
    await page.locator(selector).setTimeout(ms ?? 20_000).click();
    return null;
  },
  wait: async ({ fn, args = [], ms }) => {
    const handle = await page.waitForFunction(fnFrom(fn), { timeout: ms ?? 20_000, polling: 100 }, ...args);
    const value = await handle.jsonValue();
    await handle.dispose();
    return value;
  },
  eval: ({ fn, args = [] }) => page.evaluate(fnFrom(fn), ...args),
  screenshot: ({ path }) => page.screenshot({ path }).then(() => path),
  close: () => close().then(() => null),
};

send({ event: 'ready', version: await browser.version() });

const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {  // one command at a time, in order
    let msg;
    try {
      msg = JSON.parse(line);
      const run = commands[msg.cmd];
      if (!run) throw new Error(`unknown command ${msg.cmd}`);
      const value = await run(msg);
      send({ id: msg.id, ok: true, value: value === undefined ? null : value });
      if (msg.cmd === 'close') process.exit(0);
    } catch (err) {
      send({ id: msg?.id ?? null, ok: false, error: String(err && (err.stack || err.message) || err) });
    }
  });
});
lines.on('close', () => { queue.then(close).then(() => process.exit(0)); });
