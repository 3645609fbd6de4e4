// The account objects (Durable Objects, COORDINATOR) against the built worker: a retry while the
// first attempt waits on REPLY_URL, dedup with the Cache API storing nothing (as on
// *.workers.dev), marks that survive a restart, replayed plaintext URLs, and a relay without
// the binding.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { withRelay, DEMO, objectRecords } from "./harness.mjs";
import { buildCallback, messageXml } from "../../tools/wechat.mjs";

const creds = { token: DEMO.WECHAT_TOKEN, encodingAesKey: DEMO.WECHAT_ENCODING_AES_KEY, appId: DEMO.WECHAT_APP_ID };
const REPLY_URL = "http://replies.test/reply";
const hooks = (sent) => sent.filter((s) => s.url.startsWith("http://hooks.test/"));
const post = (relay, { query, body }) =>
  relay.fetch(`/wechat?${query}`, { method: "POST", body, headers: { "content-type": "text/xml" } });

let n = 0;
const text = (content) => messageXml({ from: `o_coord_${++n}`, fields: { MsgType: "text", Content: content, MsgId: String(9_100_000_000 + n) } });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe("callback claims", () => {
  for (const mode of ["plain", "safe"]) {
    test(`a retry while the first attempt waits on REPLY_URL gets its reply, and nothing happens twice (${mode})`, async () => {
      const upstream = async (req) => {
        if (req.url !== REPLY_URL) return new Response(null, { status: 200 });
        await sleep(1500);
        return Response.json({ type: "text", content: "the one reply" });
      };
      await withRelay({ queues: true, upstream, bindings: { REPLY_URL } }, async (relay) => {
        const xml = text("wait for me");
        const callback = buildCallback({ ...creds, xml, mode });
        const first = post(relay, callback);
        await sleep(300);
        // WeChat's retry: the same message, with a new nonce and signature.
        const retry = await post(relay, buildCallback({ ...creds, xml, mode }));
        const firstAnswer = await first;
        assert.equal(firstAnswer.status, 200);
        assert.equal(retry.status, 200);
        const [a, b] = [await firstAnswer.text(), await retry.text()];
        if (mode === "plain") {
          assert.match(a, /the one reply/);
          assert.equal(b, a, "the same passive reply");
        } else {
          assert.match(a, /<Encrypt>/);
          assert.match(b, /<Encrypt>/);
        }
        await relay.waitFor((s) => hooks(s).length === 1);
        await relay.settle(800);
        assert.equal(relay.sent.filter((s) => s.url === REPLY_URL).length, 1, "the reply receiver is asked once");
        assert.equal(hooks(relay.sent).length, 1, "delivered once");
      });
    });
  }

  test("a retry storm is delivered once with the Cache API storing nothing (workers.dev)", async () => {
    await withRelay({ queues: true }, async (relay) => {
      const xml = text("storm");
      for (let i = 0; i < 4; i++) {
        // Each retry has its own nonce and signature: the same message inside.
        const res = await post(relay, buildCallback({ ...creds, xml, mode: "safe" }));
        assert.equal(res.status, 200);
        assert.equal(await res.text(), "success");
      }
      await relay.waitFor((s) => hooks(s).length === 1);
      await relay.settle(800);
      assert.equal(hooks(relay.sent).length, 1);
    });
  });

  test("marks survive a restart: a retry after it is answered and not delivered again", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "relay-objects-"));
    try {
      const xml = text("before the restart");
      await withRelay({ queues: true, persist: dir }, async (relay) => {
        assert.equal((await post(relay, buildCallback({ ...creds, xml, mode: "safe" }))).status, 200);
        await relay.waitFor((s) => hooks(s).length === 1);
        // The outcome reaches the object within a second of the answer (with the next claim,
        // or alone); a restart before then would deliver the retry again, never lose it.
        await relay.settle(1500);
      });
      await withRelay({ queues: true, persist: dir }, async (relay) => {
        const res = await post(relay, buildCallback({ ...creds, xml, mode: "safe" }));
        assert.equal(res.status, 200);
        await relay.settle(1000);
        assert.equal(hooks(relay.sent).length, 0, "the restarted relay remembers the event");
        // A new event is delivered as ever.
        assert.equal((await post(relay, buildCallback({ ...creds, xml: text("after"), mode: "safe" }))).status, 200);
        await relay.waitFor((s) => hooks(s).length === 1);
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a replayed plaintext URL with another body is 401 and forwarded nowhere", async () => {
    await withRelay({ queues: true }, async (relay) => {
      const callback = buildCallback({ ...creds, xml: text("genuine"), mode: "plain" });
      assert.equal((await post(relay, callback)).status, 200);
      await relay.waitFor((s) => hooks(s).length === 1);
      const forged = { query: callback.query, body: text("forged by whoever saw the URL") };
      const res = await post(relay, forged);
      assert.equal(res.status, 401);
      assert.match(await res.text(), /replayed/);
      // The same URL and body is WeChat's own retry: answered, not delivered again.
      const retry = await post(relay, callback);
      assert.equal(retry.status, 200);
      await relay.settle(800);
      assert.equal(hooks(relay.sent).length, 1);
      assert.ok(!relay.sent.some((s) => s.body.includes("forged")));
    });
  });

  test("without the COORDINATOR binding callbacks are handled, uncoordinated, with a warning", async () => {
    await withRelay({ queues: true, coordinator: false }, async (relay) => {
      const res = await post(relay, buildCallback({ ...creds, xml: text("alone"), mode: "safe" }));
      assert.equal(res.status, 200);
      await relay.waitFor((s) => hooks(s).length === 1);
      assert.match(relay.logs.join(""), /account object did not answer/);
    });
  });
});

describe("dead letters and health at the account objects", () => {
  const ADMIN = "admin-key-for-tests";
  const admin = { authorization: `Bearer ${ADMIN}` };

  test("dead letters survive a restart of the runtime and are replayed once", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "relay-dead-"));
    let gone = true;
    const upstream = (s) => (s.url.startsWith("http://hooks.test/") ? new Response(null, { status: gone ? 410 : 204 }) : undefined);
    try {
      await withRelay({ upstream, persist: dir, bindings: { ADMIN_API_KEY: ADMIN } }, async (relay) => {
        assert.equal((await post(relay, buildCallback({ ...creds, xml: text("<img src=x onerror=alert(1)>"), mode: "safe" }))).status, 200);
        await relay.waitFor((s) => hooks(s).length === 1);
        for (let i = 0; i < 40; i++) {
          const page = await (await relay.fetch("/admin/dead-letters", { headers: admin })).json();
          if (page.dead_letters.length === 1) break;
          await sleep(100);
        }
        const records = await objectRecords(relay, "default");
        const page = await (await relay.fetch("/admin/dead-letters", { headers: admin })).json();
        assert.equal(page.dead_letters.length, 1);
        const [letter] = page.dead_letters;
        assert.equal(letter.account, "default");
        assert.equal(letter.type, "text");
        const mine = await (await relay.fetch("/admin/dead-letters?account=default", { headers: admin })).json();
        assert.equal(mine.dead_letters.length, 1);
        const others = await (await relay.fetch("/admin/dead-letters?target=elsewhere.test", { headers: admin })).json();
        assert.equal(others.dead_letters.length, 0);
        // Kept by the account's object, not in KV.
        const kv = await relay.mf.getKVNamespace("WECHAT_KV");
        assert.equal((await kv.list({ prefix: "dead:" })).keys.length, 0);
        const hashOf = letter.target; // shown without query or user info
        assert.equal(hashOf, "http://hooks.test/a");
        assert.equal(await records.get("dead:default:nothing"), null);
      });
      gone = false;
      await withRelay({ upstream, persist: dir, bindings: { ADMIN_API_KEY: ADMIN } }, async (relay) => {
        const page = await (await relay.fetch("/admin/dead-letters", { headers: admin })).json();
        assert.equal(page.dead_letters.length, 1, "still there after the restart");
        const id = page.dead_letters[0].id;
        // Two replays at once: the object hands the letter to one (the other finds it taken,
        // or gone: 404).
        const both = await Promise.all(
          [0, 1].map(() => relay.fetch(`/admin/replay?id=${id}`, { method: "POST", headers: admin }).then(async (r) => ({ status: r.status, body: await r.json() }))),
        );
        const delivered = both.filter((r) => r.status === 200).reduce((n, r) => n + r.body.delivered, 0);
        assert.equal(delivered, 1, JSON.stringify(both));
        assert.ok(both.every((r) => r.status === 200 || r.status === 404), JSON.stringify(both));
        await relay.settle(500);
        assert.equal(hooks(relay.sent).length, 1, "sent once");
        const after = await (await relay.fetch("/admin/dead-letters", { headers: admin })).json();
        assert.equal(after.dead_letters.length, 0);
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a KV deployment's dead letters move into their accounts' objects and replay from there", async () => {
    await withRelay({ bindings: { ADMIN_API_KEY: ADMIN } }, async (relay) => {
      const kv = await relay.mf.getKVNamespace("WECHAT_KV");
      const id = "evt_0123456789abcdef0123456789abcdef";
      const body = JSON.stringify({ id, type: "message.text", account: "default" });
      const letter = { id, account: "default", target: "http://hooks.test/a", body, attempts: 4, last_status: 410, last_error: "HTTP 410", first_attempt_at: Date.now() - 60_000, last_attempt_at: Date.now() - 1000 };
      await kv.put(`dead:${id}:00c0ffee`, JSON.stringify(letter));
      const page = await (await relay.fetch("/admin/dead-letters", { headers: admin })).json();
      assert.deepEqual(page.dead_letters.map((l) => l.id), [id]);
      assert.equal((await kv.list({ prefix: "dead:" })).keys.length, 0, "moved out of KV");
      const r = await (await relay.fetch(`/admin/replay?id=${id}`, { method: "POST", headers: admin })).json();
      assert.equal(r.delivered, 1, JSON.stringify(r));
      const [sent] = hooks(relay.sent);
      assert.equal(sent.headers["webhook-id"], id);
      assert.equal(sent.body.toString(), body);
    });
  });

  test("GET /admin/status shows each account's traffic and token times, never a secret", async () => {
    await withRelay({ bindings: { ADMIN_API_KEY: ADMIN, WECHAT_APP_SECRET: "demo-app-secret-value" } }, async (relay) => {
      assert.equal((await relay.fetch("/admin/status")).status, 401);
      for (let i = 0; i < 2; i++) assert.equal((await post(relay, buildCallback({ ...creds, xml: text(`hello ${i}`), mode: "safe" }))).status, 200);
      await relay.waitFor((s) => hooks(s).length === 2);
      const res = await relay.fetch("/admin/status", { headers: admin });
      assert.equal(res.status, 200);
      const status = await res.json();
      const shown = JSON.stringify(status);
      for (const secret of [DEMO.WECHAT_TOKEN, DEMO.WECHAT_ENCODING_AES_KEY, "demo-app-secret-value", ADMIN]) assert.ok(!shown.includes(secret), secret);
      const account = status.accounts.find((a) => a.name === "default");
      assert.equal(account.server_urls[0].url, "http://relay.test/wechat");
      assert.equal(account.health.hours.length, 48);
      assert.equal(account.health.hours.at(-1).callbacks, 2);
      assert.ok(account.health.last_callback_at <= status.now);
      assert.equal(account.health.credentials.forced_refresh_budget, 15);
      assert.ok(account.setup.some((s) => s.setting === "WECHAT_TOKEN" && s.state === "present"));
    });
  });
});
