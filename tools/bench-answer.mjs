#!/usr/bin/env node
// How long WeChat waits for its answer: p50/p99 of the callback answer time at concurrency 16,
// through `wrangler dev --local` (workerd, local KV and queues): forwarded nowhere (the
// baseline), in queue mode, direct mode, and queue mode with a REPLY_URL that answers at once;
// and workerd's own CPU per request (utime + stime of the workerd process from /proc, over a
// burst) for a new callback beside a bare `GET /healthz`, the runtime's floor, in the same run.
// First, the same measure of a plain JS Worker (tools/bench-floor) for what the runtime itself
// costs: the floor, one Durable Object request with a SQLite write (what a callback's claim
// is), one console line. A benchmark, not a test: it prints numbers.
//
//   bash scripts/build.sh && node tools/bench-answer.mjs [--requests 1000] [--concurrency 16]
import { spawn } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildCallback, messageXml } from "./wechat.mjs";

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const REQUESTS = arg("requests", 1000);
// Concurrency 16, as WeChat's bursts look, and 1, where a callback's own time shows.
const CONCURRENCIES = [arg("concurrency", 16), 1];
const RELAY_PORT = 8797;
const RECEIVER_PORT = 8798;
const REFERENCE_PORT = 8796;
const creds = { token: "benchtoken", encodingAesKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", appId: "wxbench000000000" };

// The receiver: every webhook 204, the reply endpoint a text reply at once.
const receiver = http
  .createServer(async (req, res) => {
    try {
      for await (const _ of req);
    } catch {
      return; // a relay stopped mid-delivery (the next mode's start)
    }
    if (req.url === "/reply") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ type: "text", content: "收到" }));
    } else {
      res.writeHead(204).end();
    }
  })
  .listen(RECEIVER_PORT, "127.0.0.1");

/// `wrangler dev` on `port`, in `cwd` (its wrangler.toml), with `vars`.
function startWrangler(cwd, port, vars) {
  const flags = Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
  const child = spawn(
    "npx",
    ["wrangler", "dev", "--local", "--ip", "127.0.0.1", "--port", String(port), "--show-interactive-dev-session=false", ...flags],
    // Its own process group, so that stopping it stops workerd too (a workerd left behind keeps
    // the port, and the next mode's relay would not be the one measured).
    { cwd, env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" }, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  return { child, port, output: () => output };
}

/// Stops a `startWrangler` process group, and waits until nothing answers on its port.
async function stopWrangler(started) {
  const exited = new Promise((r) => started.child.once("exit", r));
  try {
    process.kill(-started.child.pid, "SIGTERM");
  } catch {}
  await exited;
  for (let i = 0; i < 100 && workerdPids(started.port).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
}

function startRelay(vars) {
  return startWrangler(root, RELAY_PORT, {
    WECHAT_TOKEN: creds.token,
    WECHAT_ENCODING_AES_KEY: creds.encodingAesKey,
    WECHAT_APP_ID: creds.appId,
    FORWARD_URLS: `http://127.0.0.1:${RECEIVER_PORT}/hook`,
    FORWARD_SECRET: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ...vars,
  });
}

async function waitUp(port = RELAY_PORT) {
  for (let i = 0; i < 300; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (res.ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("wrangler dev did not start");
}

let sent = 0;

/// Runs `task(0)` … `task(count - 1)` on `concurrency` workers at once.
async function pool(count, concurrency, task) {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/// wrangler dev's workerd processes: the one serving `port` and its inspector/proxy peers
/// (every workerd started for this port's session).
function workerdPids(port = RELAY_PORT) {
  const found = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (cmdline.includes("workerd") && cmdline.includes(`127.0.0.1:${port}`)) found.push(Number(entry));
    } catch {}
  }
  return found;
}

/// CPU milliseconds the processes have used (utime + stime, in clock ticks of 10 ms).
function cpuMs(pids) {
  let ticks = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks * 10;
}

/// CPU milliseconds per request of `burst(n)` for the workerd processes `pids`; `settle` waits
/// for work the requests left behind (queued deliveries), whose CPU is theirs too.
async function cpuPer(pids, n, burst, settle = 0) {
  const before = cpuMs(pids);
  await burst(n);
  await new Promise((r) => setTimeout(r, settle));
  return (cpuMs(pids) - before) / n;
}

const drain = (url, init) => fetch(url, init).then((res) => res.arrayBuffer());

/// The runtime's own costs, from the plain JS Worker of tools/bench-floor.
async function reference() {
  const started = startWrangler(path.join(root, "tools", "bench-floor"), REFERENCE_PORT, {});
  try {
    await waitUp(REFERENCE_PORT);
    const pids = workerdPids(REFERENCE_PORT);
    const count = Math.max(REQUESTS, 2000);
    const at = (route) => () => drain(`http://127.0.0.1:${REFERENCE_PORT}${route}`, route === "/healthz" ? {} : { method: "POST", body: "x".repeat(600) });
    for (const route of ["/claim", "/log"]) await pool(100, 16, at(route)); // warm
    const floor = await cpuPer(pids, count, (n) => pool(n, 16, at("/healthz")));
    const claim = await cpuPer(pids, count, (n) => pool(n, 16, at("/claim")));
    const log = await cpuPer(pids, count, (n) => pool(n, 16, at("/log")));
    console.log(`${"JS reference worker".padEnd(22)} workerd CPU per request: /healthz ${floor.toFixed(3)} ms, one Durable Object request with a SQLite write ${claim.toFixed(3)} ms (${(claim / floor).toFixed(2)}x the floor), one console line ${log.toFixed(3)} ms (${count} each)`);
  } catch (e) {
    console.error(started.output());
    throw e;
  } finally {
    await stopWrangler(started);
  }
}

async function run(label, vars) {
  const relay = startRelay(vars);
  try {
    await waitUp();
    const fire = async (count, times, concurrency, content = (i) => `bench ${i}`) => {
      let failures = 0;
      await pool(count, concurrency, async (i) => {
        const xml = messageXml({ from: `o_bench_${++sent}`, fields: { MsgType: "text", Content: content(i) } });
        const { query, body } = buildCallback({ ...creds, xml, mode: "safe" });
        const started = performance.now();
        const res = await fetch(`http://127.0.0.1:${RELAY_PORT}/wechat?${query}`, { method: "POST", body });
        await res.arrayBuffer();
        times.push(performance.now() - started);
        if (res.status !== 200) failures += 1;
      });
      return failures;
    };
    await fire(50, [], 16); // warm the isolate
    if (label === "baseline (no targets)" || label === "queue") {
      // CPU per request over bursts at concurrency 16; `settle` lets queued deliveries finish,
      // whose CPU is the callback's too.
      const pids = workerdPids();
      const count = Math.max(REQUESTS, 2000);
      const floor = await cpuPer(pids, count, (n) => pool(n, 16, () => drain(`http://127.0.0.1:${RELAY_PORT}/healthz`)));
      // A callback refused at its signature: the Worker's own share (routing, settings,
      // verification) without the object's claim.
      const { query, body } = buildCallback({ ...creds, xml: messageXml({ fields: { MsgType: "text", Content: "forged" } }), mode: "safe" });
      const forged = String(query).replace(/msg_signature=[0-9a-f]/, (m) => m.slice(0, -1) + (m.endsWith("0") ? "1" : "0"));
      const refused = await cpuPer(pids, count, (n) => pool(n, 16, () => drain(`http://127.0.0.1:${RELAY_PORT}/wechat?${forged}`, { method: "POST", body })));
      const callback = await cpuPer(pids, count, (n) => fire(n, [], 16), 3000);
      // The same with 16 KB of Chinese text, where hashing and AES are a larger share.
      const chinese = "微信公众平台消息中转服务测试。".repeat(Math.floor((16 * 1024) / 45));
      const large = await cpuPer(pids, count / 2, (n) => fire(n, [], 16, (i) => `${i} ${chinese}`), 3000);
      console.log(`${label.padEnd(22)} workerd CPU per request: /healthz ${floor.toFixed(3)} ms, refused callback ${refused.toFixed(3)} ms, new callback ${callback.toFixed(3)} ms (${(callback / floor).toFixed(2)}x the floor; ${count} each), new 16 KB callback ${large.toFixed(3)} ms`);
    }
    for (const concurrency of CONCURRENCIES) {
      const times = [];
      const count = concurrency === 1 ? Math.min(REQUESTS, 300) : REQUESTS;
      const failures = await fire(count, times, concurrency);
      times.sort((a, b) => a - b);
      const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))].toFixed(1);
      console.log(`${label.padEnd(22)} concurrency ${String(concurrency).padStart(2)}   p50 ${q(0.5).padStart(6)} ms   p99 ${q(0.99).padStart(6)} ms   (${count} callbacks, ${failures} non-200)`);
    }
  } catch (e) {
    console.error(relay.output());
    throw e;
  } finally {
    await stopWrangler(relay);
  }
}

await reference();

// The baseline: the same callbacks forwarded nowhere (an empty route table), so the others'
// difference is what delivery adds to the answer.
await run("baseline (no targets)", { FORWARD_URLS: "", FORWARD_ROUTES: "{}" });
await run("queue", {});
await run("direct", { FORWARD_MODE: "direct" });
await run("queue + REPLY_URL", { REPLY_URL: `http://127.0.0.1:${RECEIVER_PORT}/reply` });
receiver.close();
