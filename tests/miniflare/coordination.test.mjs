// The account objects (Durable Objects, COORDINATOR) against the built worker: a retry while the
// first attempt waits on REPLY_URL, dedup with the Cache API storing nothing (as on
// *.workers.dev), marks that survive a restart, replayed plaintext URLs, and a relay without
// the binding.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { withRelay, DEMO } from "./harness.mjs";
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
