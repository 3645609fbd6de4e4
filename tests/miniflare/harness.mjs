// Runs the built worker (build/index.js + wasm) in Miniflare, the way workers-rs's own test
// suite does, with every outbound fetch caught by a scripted fake so the tests see exactly what
// the relay sends, and can make targets fail.
import { Miniflare } from "miniflare";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "../..");

export const DEMO = {
  WECHAT_TOKEN: "spamtest",
  WECHAT_ENCODING_AES_KEY: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
  WECHAT_APP_ID: "wx2c2769f8efd9abc2",
  WECHAT_APP_SECRET: "app-secret-never-logged",
  FORWARD_URLS: "http://hooks.test/a",
  FORWARD_SECRET: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
  // The tests send plaintext and safe-mode callbacks alike; safe mode alone has its own tests.
  WECHAT_MESSAGE_MODE: "compatible",
};

export const QUEUE = "wechat-relay-deliveries";
export const DEAD_LETTER_QUEUE = "wechat-relay-dead-letters";

/** The queue configuration of wrangler.toml, with batches handed over at once. */
export const QUEUE_CONSUMERS = {
  [QUEUE]: { maxBatchSize: 10, maxBatchTimeout: 0, maxRetries: 100, deadLetterQueue: DEAD_LETTER_QUEUE },
  [DEAD_LETTER_QUEUE]: { maxBatchSize: 10, maxBatchTimeout: 0, maxRetries: 100 },
};

/**
 * Starts a relay. `bindings` override DEMO (a value of undefined removes it); `upstream(req)` may
 * answer outbound requests (default 204); `kv: false` leaves WECHAT_KV unbound; `queues: true`
 * binds FORWARD_QUEUE and consumes both queues as wrangler.toml does; `coordinator: false` leaves
 * the account objects (COORDINATOR) unbound; `persist` (a directory) keeps the objects' SQLite
 * across relays, as a restart would; `serviceBindings` and `workers` (more Miniflare workers) are
 * passed through. Returns { mf, fetch, sent, waitFor, dispose }.
 */
export async function startRelay({ bindings = {}, upstream, kv = true, queues = false, coordinator = true, persist, serviceBindings, workers = [] } = {}) {
  const sent = [];
  const merged = { ...DEMO, ...bindings };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  const logs = [];
  const relay = {
    name: "relay",
    modules: true,
    scriptPath: path.join(root, "build/index.js"),
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    compatibilityDate: "2026-04-20",
    bindings: merged,
    kvNamespaces: kv ? ["WECHAT_KV"] : [],
    durableObjects: coordinator ? { COORDINATOR: { className: "AccountObject", useSQLite: true } } : {},
    serviceBindings,
    outboundService: async (request) => {
      const body = Buffer.from(await request.arrayBuffer());
      const entry = { url: request.url, method: request.method, headers: Object.fromEntries(request.headers), body, at: Date.now() };
      sent.push(entry);
      const answer = upstream ? await upstream(entry, sent) : undefined;
      return answer ?? new Response(null, { status: 204 });
    },
  };
  if (queues) {
    // A test may bind a stand-in as FORWARD_QUEUE (a Service Binding with a send method).
    relay.queueProducers = serviceBindings?.FORWARD_QUEUE ? {} : { FORWARD_QUEUE: QUEUE };
    relay.queueConsumers = QUEUE_CONSUMERS;
  }
  const mf = new Miniflare({
    workers: [relay, ...workers],
    // As on *.workers.dev: the Cache API stores nothing (the relay does not rely on it).
    cache: false,
    kvPersist: false,
    durableObjectsPersist: persist ?? false,
    handleRuntimeStdio(stdout, stderr) {
      for (const s of [stdout, stderr]) s.on("data", (d) => logs.push(String(d)));
    },
  });
  await mf.ready;
  const base = "http://relay.test";
  return {
    mf,
    sent,
    logs,
    fetch: (p, init) => mf.dispatchFetch(base + p, init),
    /** Waits until `predicate(sent)` holds (forwarding runs after the response). */
    async waitFor(predicate, ms = 10_000) {
      const until = Date.now() + ms;
      while (Date.now() < until) {
        if (predicate(sent)) return;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`timed out; sent so far: ${sent.map((s) => s.url).join(", ")}`);
    },
    /** Lets background work settle, then checks that nothing more arrives. */
    settle: (ms = 400) => new Promise((r) => setTimeout(r, ms)),
    dispose: () => mf.dispose(),
  };
}

/** Runs `fn(relay)` against a relay started with `options`, disposing of it afterwards. */
export async function withRelay(options, fn) {
  const relay = await startRelay(options);
  try {
    await fn(relay);
  } finally {
    await relay.dispose();
  }
}

/**
 * The records of an account's object (a platform's state), read and written the way the Worker
 * does: the relay's JSON requests to the object's fetch. A KV-like face: get(key[, "json"]),
 * put(key, value), delete(key).
 */
export async function objectRecords(relay, name) {
  const ns = await relay.mf.getDurableObjectNamespace("COORDINATOR");
  const stub = ns.get(ns.idFromName(name));
  // The wire is serde's externally tagged JSON: {"store":{"record":{"get":{"key":…}}}}.
  const ask = async (record) => {
    const res = await stub.fetch("https://account-object.internal/", { method: "POST", body: JSON.stringify({ store: { record } }) });
    const answer = await res.json();
    if (answer.failed) throw new Error(answer.failed.error);
    return answer;
  };
  return {
    async get(key, type) {
      const { value } = (await ask({ get: { key } })).value;
      return value == null ? null : type === "json" ? JSON.parse(value) : value;
    },
    put: (key, value) => ask({ put: { key, value, ttl_secs: null } }),
    delete: (key) => ask({ delete: { key } }),
  };
}
