// The operator console in a real browser: headless Chromium (Debian's package, driven by
// playwright-core) against `wrangler dev` with the demo settings, as a newcomer runs it. A
// receiver on loopback stands in for the team's webhook: it refuses (410) until told otherwise.
//
// CONSOLE_SCREENSHOT=path writes the README's screenshot there (build/console.png otherwise).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { buildCallback, messageXml, readEnvFile } from "../../tools/wechat.mjs";

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "../..");
const demo = readEnvFile(path.join(root, "demo/demo.env"));
const KEY = demo.ADMIN_API_KEY;
const XSS = "<img src=x onerror=alert(1)>";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

const freePort = () =>
  new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let receiver;
let refusing = true;
const received = [];
let wrangler;
let logs = "";
let base;
let browser;
let stateDir;

async function waitFor(what, check, ms = 30_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const found = await check().catch(() => false);
    if (found) return found;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}\n--- wrangler dev ---\n${logs.slice(-4000)}`);
}

before(async () => {
  const receiverPort = await freePort();
  receiver = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      if (req.url === "/reply") return res.writeHead(204).end();
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString(), refused: refusing });
      res.writeHead(refusing ? 410 : 204).end();
    });
  });
  await new Promise((r) => receiver.listen(receiverPort, "127.0.0.1", r));

  // The demo settings, with the receiver's port instead of tools/receive.mjs's.
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "relay-console-"));
  const envFile = path.join(stateDir, "demo.env");
  fs.writeFileSync(envFile, fs.readFileSync(path.join(root, "demo/demo.env"), "utf8").replaceAll("127.0.0.1:8788", `127.0.0.1:${receiverPort}`));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  wrangler = spawn(
    "npx",
    ["wrangler", "dev", "--local", "--ip", "127.0.0.1", "--port", String(port), "--env-file", envFile, "--persist-to", path.join(stateDir, "state"), "--show-interactive-dev-session=false"],
    { cwd: root, env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" }, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  for (const s of [wrangler.stdout, wrangler.stderr]) s.on("data", (d) => (logs += d));
  await waitFor("wrangler dev", async () => (await fetch(`${base}/healthz`)).ok, 180_000);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  if (wrangler?.pid) {
    try {
      process.kill(-wrangler.pid, "SIGTERM");
    } catch {}
  }
  receiver?.close();
  await sleep(500);
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
});

let n = 0;
async function send(content) {
  const xml = messageXml({ from: `o_console_${++n}`, fields: { MsgType: "text", Content: content, MsgId: String(9_300_000_000 + Date.now() % 1_000_000 + n) } });
  const { query, body } = buildCallback({ token: demo.WECHAT_TOKEN, encodingAesKey: demo.WECHAT_ENCODING_AES_KEY, appId: demo.WECHAT_APP_ID, xml, mode: "safe" });
  const res = await fetch(`${base}/wechat?${query}`, { method: "POST", body, headers: { "content-type": "text/xml" } });
  assert.equal(res.status, 200);
}

const deadLetters = async () => {
  const res = await fetch(`${base}/admin/dead-letters`, { headers: { authorization: `Bearer ${KEY}` } });
  return (await res.json()).dead_letters;
};

async function login(page, key) {
  await page.goto(`${base}/admin`);
  await page.getByLabel("Admin key").fill(key);
  await page.getByRole("button", { name: "Open the console" }).click();
}

test("the console shows the accounts, a refused event as text, and one click sends it again", async () => {
  // Some traffic delivered, then one refused by the receiver.
  refusing = false;
  await send("hello from the console test");
  await waitFor("a delivery", async () => received.length >= 1);
  refusing = true;
  await send(XSS);
  const [letter] = await waitFor("the dead letter", async () => {
    const list = await deadLetters();
    return list.length === 1 && list;
  });

  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const dialogs = [];
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    d.dismiss();
  });
  const failed = [];
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && failed.push(m.text()));
  const refusedUrls = [];
  page.on("response", (r) => r.status() >= 400 && refusedUrls.push(`${r.status()} ${new URL(r.url()).pathname}`));

  // A wrong key shows the 401 and nothing else.
  await login(page, "not-the-key");
  await page.getByRole("alert").filter({ hasText: "401" }).waitFor();
  assert.equal(await page.locator("#console").isVisible(), false);
  assert.equal(await page.locator("[data-account]").count(), 0);

  await login(page, KEY);
  const card = page.locator("article[data-account=default]");
  await card.waitFor();
  assert.equal(await page.getByLabel("Admin key").isVisible(), false, "the key's form is gone");
  const cardText = await card.textContent();
  assert.ok(cardText.includes(`${base}/wechat`), cardText);
  assert.ok(cardText.includes("wxdemo0000000000"), cardText);
  assert.ok(/Last callback.*ago/.test(cardText), cardText);
  assert.ok(cardText.includes("2 callbacks"), cardText);
  assert.ok(cardText.includes("1 failed deliveries"), cardText);
  assert.ok(cardText.includes("of 15"), "forced refreshes against the budget");
  assert.ok((await card.locator("svg.chart rect").count()) >= 1, "the chart has bars");
  for (const name of ["staff", "mini"]) {
    const other = await page.locator(`article[data-account=${name}]`).textContent();
    assert.ok(other.includes(`${base}/wechat/${name}`), other);
  }
  // The setup check names what the demo's extra accounts lack, with the lines that set it.
  const setup = await page.locator(".setup[data-account=staff]").textContent();
  assert.ok(setup.includes("npx wrangler secret put WECHAT_STAFF_APP_SECRET"), setup);
  // No secret is in the page.
  const html = await page.content();
  for (const secret of [demo.WECHAT_TOKEN, demo.WECHAT_ENCODING_AES_KEY, demo.WECHAT_APP_SECRET, demo.FORWARD_SECRET, KEY]) {
    assert.ok(!html.includes(secret), `a secret is in the page: ${secret.slice(0, 4)}…`);
  }

  // The dead letter, its content shown as the characters it is.
  const row = page.locator(`#dead tr[data-id="${letter.id}"]`);
  await row.waitFor();
  assert.ok((await row.locator("td.content").textContent()).includes(XSS));
  assert.equal(await page.locator("#dead img").count(), 0, "no element made of the content");
  assert.ok((await row.textContent()).includes("410"));
  const shot = process.env.CONSOLE_SCREENSHOT ?? path.join(root, "build/console.png");
  await page.screenshot({ path: shot });

  // Replay: delivered at the receiver, gone from the table.
  refusing = false;
  const before = received.length;
  await row.getByRole("button", { name: "Replay" }).click();
  await waitFor("the replayed delivery", async () => received.slice(before).some((r) => r.headers["webhook-id"] === letter.id && !r.refused));
  await row.waitFor({ state: "detached", timeout: 20_000 });
  assert.deepEqual(await deadLetters(), []);
  assert.deepEqual(dialogs, [], "nothing executed");
  assert.deepEqual(failed, [], "no script error (CSP included)");
  // Only the wrong key's refusal (and the browser's own look for a favicon).
  assert.deepEqual(refusedUrls.filter((u) => !u.endsWith("/favicon.ico")), ["401 /admin/status"]);
  await page.close();
});

test("every admin answer carries the security headers", async () => {
  const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
  for (const [p, auth, status] of [["/admin", null, 200], ["/admin/console.js", null, 200], ["/admin/status", "wrong", 401], ["/admin/status", KEY, 200], ["/admin/dead-letters", KEY, 200]]) {
    const res = await fetch(base + p, { headers: auth ? { authorization: `Bearer ${auth}` } : {} });
    assert.equal(res.status, status, p);
    assert.equal(res.headers.get("content-security-policy"), csp, p);
    assert.equal(res.headers.get("referrer-policy"), "no-referrer", p);
    assert.equal(res.headers.get("cache-control"), "no-store", p);
    assert.equal(res.headers.get("x-frame-options"), "DENY", p);
  }
  assert.equal((await fetch(`${base}/healthz`)).headers.get("content-security-policy"), null);
});

test("the console is readable on a phone", async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const page = await context.newPage();
  await login(page, KEY);
  await page.locator("article[data-account=default]").waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page is ${overflow}px wider than the phone`);
  const box = await page.locator("article[data-account=default]").boundingBox();
  assert.ok(box.width <= 390, "a card fits the screen");
  // The key stays in the tab: a new tab asks for it again.
  const other = await context.newPage();
  await other.goto(`${base}/admin`);
  assert.equal(await other.getByLabel("Admin key").isVisible(), true);
  assert.equal(await other.locator("#console").isVisible(), false);
  await context.close();
});
