// Forwarding: retries with backoff, each target independently, unsigned mode, failure logs,
// and settings errors that name the setting.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { startRelay, DEMO } from "./harness.mjs";
import { buildCallback, messageXml, verifyQuery } from "../../tools/wechat.mjs";

const creds = { token: DEMO.WECHAT_TOKEN, encodingAesKey: DEMO.WECHAT_ENCODING_AES_KEY, appId: DEMO.WECHAT_APP_ID };
let n = 0;
const callback = (mode = "safe") => {
  const xml = messageXml({ from: `o_fwd_${++n}`, fields: { MsgType: "text", Content: `forward ${n}` } });
  return buildCallback({ ...creds, xml, mode });
};
const post = (relay, { query, body }) => relay.fetch(`/wechat?${query}`, { method: "POST", body });

async function withRelay(options, fn) {
  const relay = await startRelay(options);
  try {
    await fn(relay);
  } finally {
    await relay.dispose();
  }
}

describe("forwarding", () => {
  test("a target answering 5xx is retried with backoff until it accepts", async () => {
    await withRelay({ upstream: (req, sent) => new Response(null, { status: sent.length < 3 ? 503 : 200 }) }, async (relay) => {
      assert.equal((await post(relay, callback())).status, 200);
      await relay.waitFor((s) => s.length === 3);
      await relay.settle(700);
      assert.equal(relay.sent.length, 3, "stops after the first success");
      const ids = new Set(relay.sent.map((r) => r.headers["webhook-id"]));
      assert.equal(ids.size, 1, "same webhook-id on every attempt");
      assert.ok(!relay.logs.join("").includes("forward failed"));
    });
  });

  test("a target that never recovers gets 4 attempts and one structured failure line", async () => {
    await withRelay({ upstream: () => new Response("down", { status: 500 }), bindings: { FORWARD_URLS: "http://hooks.test/down?token=sekrit" } }, async (relay) => {
      assert.equal((await post(relay, callback())).status, 200);
      await relay.waitFor((s) => s.length === 4, 15_000);
      const until = Date.now() + 3000;
      while (!relay.logs.join("").includes("forward failed") && Date.now() < until) await relay.settle(50);
      const line = relay.logs.join("").split("\n").find((l) => l.includes("forward failed"));
      assert.ok(line, relay.logs.join(""));
      const entry = JSON.parse(line.slice(line.indexOf("{")));
      assert.equal(entry.level, "error");
      assert.equal(entry.status, "500");
      assert.equal(entry.attempts, "4");
      assert.equal(entry.target, "http://hooks.test/down");
      assert.match(entry.event_id, /^evt_[0-9a-f]{32}$/);
      const all = relay.logs.join("");
      for (const secret of ["sekrit", DEMO.WECHAT_TOKEN, DEMO.WECHAT_APP_SECRET, DEMO.WECHAT_ENCODING_AES_KEY, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]) {
        assert.ok(!all.includes(secret), `log leaks ${secret}`);
      }
    });
  });

  test("a target slower than 5 s is abandoned and retried", async () => {
    const upstream = async (req, sent) => {
      if (sent.length === 1) await new Promise((r) => setTimeout(r, 6_000));
      return new Response(null, { status: 200 });
    };
    await withRelay({ upstream }, async (relay) => {
      const started = Date.now();
      assert.equal((await post(relay, callback())).status, 200);
      assert.ok(Date.now() - started < 2_000, "WeChat's answer does not wait for the webhook");
      await relay.waitFor((s) => s.length === 2, 15_000);
      assert.equal(relay.sent[0].headers["webhook-id"], relay.sent[1].headers["webhook-id"]);
      await relay.settle(700);
      assert.ok(!relay.logs.join("").includes("forward failed"));
    });
  });

  test("a 4xx answer is final: no retry", async () => {
    await withRelay({ upstream: () => new Response("no", { status: 410 }) }, async (relay) => {
      assert.equal((await post(relay, callback())).status, 200);
      await relay.waitFor((s) => s.length === 1);
      await relay.settle(1000);
      assert.equal(relay.sent.length, 1);
    });
  });

  test("each target is delivered independently", async () => {
    const bindings = { FORWARD_URLS: "http://hooks.test/one, http://hooks.test/two\nhttp://hooks.test/three" };
    const upstream = (req, sent) => {
      if (req.url.endsWith("/two") && sent.filter((s) => s.url.endsWith("/two")).length === 1) return new Response(null, { status: 502 });
      return new Response(null, { status: 200 });
    };
    await withRelay({ bindings, upstream }, async (relay) => {
      assert.equal((await post(relay, callback())).status, 200);
      await relay.waitFor((s) => s.length === 4);
      const count = (suffix) => relay.sent.filter((r) => r.url.endsWith(suffix)).length;
      assert.equal(count("/one"), 1);
      assert.equal(count("/two"), 2);
      assert.equal(count("/three"), 1);
      const bodies = new Set(relay.sent.map((r) => r.body.toString()));
      assert.equal(bodies.size, 1, "every target gets the same body");
    });
  });

  test("without FORWARD_SECRET the event is forwarded unsigned, with its webhook-id", async () => {
    await withRelay({ bindings: { FORWARD_SECRET: undefined } }, async (relay) => {
      assert.equal((await post(relay, callback("plain"))).status, 200);
      await relay.waitFor((s) => s.length === 1);
      const req = relay.sent[0];
      assert.equal(req.headers["webhook-signature"], undefined);
      assert.equal(req.headers["webhook-id"], JSON.parse(req.body).id);
    });
  });
});

describe("settings", () => {
  test("a missing setting is a 500 that names it, and nothing is forwarded", async () => {
    await withRelay({ bindings: { WECHAT_ENCODING_AES_KEY: undefined } }, async (relay) => {
      const res = await post(relay, callback("safe"));
      assert.equal(res.status, 500);
      assert.match(await res.text(), /WECHAT_ENCODING_AES_KEY/);
      await relay.settle(200);
      assert.equal(relay.sent.length, 0);
      assert.match(relay.logs.join(""), /WECHAT_ENCODING_AES_KEY/);
    });
  });

  test("a malformed setting is named too", async () => {
    await withRelay({ bindings: { FORWARD_URLS: "ftp://nope" } }, async (relay) => {
      const res = await post(relay, callback("plain"));
      assert.equal(res.status, 500);
      assert.match(await res.text(), /FORWARD_URLS/);
    });
    await withRelay({ bindings: { MAX_CLOCK_SKEW_SECONDS: "soon" } }, async (relay) => {
      const res = await relay.fetch(`/wechat?${verifyQuery({ token: DEMO.WECHAT_TOKEN })}`);
      assert.equal(res.status, 500);
      assert.match(await res.text(), /MAX_CLOCK_SKEW_SECONDS/);
    });
  });

  test("without WECHAT_TOKEN nothing verifies", async () => {
    await withRelay({ bindings: { WECHAT_TOKEN: undefined } }, async (relay) => {
      const res = await relay.fetch(`/wechat?${verifyQuery({ token: DEMO.WECHAT_TOKEN })}`);
      assert.equal(res.status, 500);
      assert.match(await res.text(), /WECHAT_TOKEN/);
    });
  });

  test("MAX_CLOCK_SKEW_SECONDS narrows the window", async () => {
    await withRelay({ bindings: { MAX_CLOCK_SKEW_SECONDS: "5" } }, async (relay) => {
      const q = verifyQuery({ token: DEMO.WECHAT_TOKEN, timestamp: Math.floor(Date.now() / 1000) - 30 });
      assert.equal((await relay.fetch(`/wechat?${q}`)).status, 401);
    });
  });
});
