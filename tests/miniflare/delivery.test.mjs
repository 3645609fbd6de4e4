// Durable delivery on Cloudflare Queues (Miniflare's queues, with the consumer and dead-letter
// queue of wrangler.toml), the no-queue path, dead letters and replay, routing, passive replies
// and the admin routes, against the built worker.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { startRelay, DEMO, QUEUE } from "./harness.mjs";
import { buildCallback, messageXml, decrypt, sha1Sorted } from "../../tools/wechat.mjs";
import { fakeWeChat } from "./fake-wechat.mjs";

const creds = { token: DEMO.WECHAT_TOKEN, encodingAesKey: DEMO.WECHAT_ENCODING_AES_KEY, appId: DEMO.WECHAT_APP_ID };
const ADMIN = "admin-key-for-tests";
const admin = { authorization: `Bearer ${ADMIN}` };
let n = 0;
const text = (extra = {}) => messageXml({ from: `o_dl_${++n}`, fields: { MsgType: "text", Content: `delivery ${n}`, ...extra } });
const post = (relay, { query, body }) => relay.fetch(`/wechat?${query}`, { method: "POST", body });
const hooks = (sent, path = "/a") => sent.filter((s) => new URL(s.url).pathname === path);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function withRelay(options, fn) {
  const relay = await startRelay(options);
  try {
    await fn(relay);
  } finally {
    await relay.dispose();
  }
}

async function eventually(check, ms = 20_000) {
  const until = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) throw new Error("timed out");
    await sleep(100);
  }
}

const deadLetters = async (relay) => (await (await relay.fetch("/admin/dead-letters", { headers: admin })).json()).dead_letters;

describe("queue mode", () => {
  test("a receiver failing 3 times gets the event once more after growing delays", async () => {
    const upstream = (req, sent) => new Response(null, { status: hooks(sent).length <= 3 ? 503 : 200 });
    await withRelay({ queues: true, upstream, bindings: { FORWARD_RETRY_DELAYS: "1s 2s 3s" } }, async (relay) => {
      const res = await post(relay, buildCallback({ ...creds, xml: text(), mode: "safe" }));
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "success");
      await relay.waitFor((s) => hooks(s).length === 4, 30_000);
      await relay.settle(1500);
      const seen = hooks(relay.sent);
      assert.equal(seen.length, 4, "stops after the first 2xx");
      const gaps = seen.slice(1).map((s, i) => s.at - seen[i].at);
      assert.ok(gaps[0] >= 900 && gaps[1] >= 1900 && gaps[2] >= 2900, `gaps ${gaps}`);
      assert.ok(gaps[0] < gaps[1] && gaps[1] < gaps[2], `growing: ${gaps}`);
      assert.equal(new Set(seen.map((s) => s.headers["webhook-id"])).size, 1, "one webhook-id on every attempt");
    });
  });

  test("a receiver that always fails ends in dead letters, listed, then replayed once healthy", async () => {
    let down = true;
    const upstream = () => new Response(null, { status: down ? 500 : 200 });
    const bindings = { FORWARD_RETRY_DELAYS: "1s", FORWARD_MAX_ATTEMPTS: "3", ADMIN_API_KEY: ADMIN };
    await withRelay({ queues: true, upstream, bindings }, async (relay) => {
      for (let i = 0; i < 2; i++) assert.equal((await post(relay, buildCallback({ ...creds, xml: text(), mode: "plain" }))).status, 200);
      const letters = await eventually(async () => {
        const l = await deadLetters(relay);
        return l.length === 2 && l;
      });
      assert.equal(hooks(relay.sent).length, 6, "3 attempts each");
      for (const l of letters) {
        assert.match(l.id, /^evt_[0-9a-f]{32}$/);
        assert.equal(l.target, "http://hooks.test/a");
        assert.equal(l.attempts, 3);
        assert.equal(l.last_status, 500);
        assert.match(l.last_error, /500/);
        assert.ok(Date.parse(l.first_attempt_at) <= Date.parse(l.last_attempt_at));
        assert.equal(l.body, undefined, "the listing carries no event bodies");
      }
      down = false;
      const replay = await relay.fetch("/admin/replay", { method: "POST", headers: admin });
      assert.equal(replay.status, 200);
      const answer = await replay.json();
      assert.equal(answer.queued, 2);
      await eventually(async () => (await deadLetters(relay)).length === 0);
      // Replay takes the letters at once; the queue's consumer delivers them a moment later.
      await relay.waitFor((sent) => hooks(sent).length >= 8);
      await relay.settle(500);
      const ok = hooks(relay.sent).slice(6);
      assert.equal(ok.length, 2);
      assert.deepEqual(new Set(ok.map((s) => s.headers["webhook-id"])), new Set(letters.map((l) => l.id)), "replayed with the same ids");
    });
  });

  test("a 410 is not retried: a dead letter at once, which replay delivers once the receiver is back", async () => {
    let gone = true;
    const upstream = () => new Response(null, { status: gone ? 410 : 200 });
    await withRelay({ queues: true, upstream, bindings: { ADMIN_API_KEY: ADMIN } }, async (relay) => {
      await post(relay, buildCallback({ ...creds, xml: text(), mode: "safe" }));
      const [letter] = await eventually(async () => {
        const l = await deadLetters(relay);
        return l.length === 1 && l;
      });
      await relay.settle(1500);
      assert.equal(hooks(relay.sent).length, 1, "not retried");
      assert.equal(letter.last_status, 410);
      assert.equal(letter.attempts, 1);
      gone = false;
      const wrongId = await relay.fetch("/admin/replay?id=evt_ffffffffffffffffffffffffffffffff", { method: "POST", headers: admin });
      assert.equal(wrongId.status, 404);
      assert.equal((await relay.fetch("/admin/replay?id=nope", { method: "POST", headers: admin })).status, 400);
      const replay = await (await relay.fetch(`/admin/replay?id=${letter.id}`, { method: "POST", headers: admin })).json();
      assert.deepEqual(replay.replayed.map((r) => [r.id, r.result]), [[letter.id, "queued"]]);
      await relay.waitFor((s) => hooks(s).length === 2);
      await eventually(async () => (await deadLetters(relay)).length === 0);
      assert.equal(hooks(relay.sent)[1].headers["webhook-id"], letter.id);
    });
  });

  test("stop a receiver, send 100 callbacks, start it again: each arrives once with a 2xx, nothing dead", async () => {
    let upAt = Infinity;
    // Down (503) until upAt, then up: decided on the time the request reached the receiver.
    const upstream = (req) => new Response(null, { status: req.at >= upAt ? 200 : 503 });
    await withRelay({ queues: true, upstream, bindings: { FORWARD_RETRY_DELAYS: "1s 2s", ADMIN_API_KEY: ADMIN } }, async (relay) => {
      for (let i = 0; i < 100; i++) {
        const res = await post(relay, buildCallback({ ...creds, xml: text(), mode: i % 2 ? "safe" : "plain" }));
        assert.equal(res.status, 200);
      }
      await sleep(2000);
      assert.ok(relay.sent.length >= 100, "the receiver was tried while down");
      upAt = Date.now();
      const afterUp = () => relay.sent.filter((s) => s.at >= upAt);
      await eventually(() => new Set(afterUp().map((s) => s.headers["webhook-id"])).size === 100, 40_000);
      await relay.settle(2500);
      assert.equal(afterUp().length, 100, "each event once with a 2xx after the receiver is back");
      assert.equal((await deadLetters(relay)).length, 0);
    });
  });

  test("an enqueue failure answers 5xx and leaves no mark: WeChat's retry is delivered", async () => {
    const flaky = {
      name: "flaky-queue",
      modules: true,
      compatibilityDate: "2026-04-20",
      script: `
        import { WorkerEntrypoint } from "cloudflare:workers";
        let calls = 0;
        export class FlakyQueue extends WorkerEntrypoint {
          async send(body, options) {
            calls += 1;
            if (calls === 1) throw new Error("queue is down");
            await this.env.REAL.send(body, options);
          }
          async sendBatch(messages) {
            calls += 1;
            if (calls === 1) throw new Error("queue is down");
            await this.env.REAL.sendBatch(messages);
          }
        }
        export default { fetch() { return new Response("a queue stand-in"); } };`,
      queueProducers: { REAL: QUEUE },
    };
    const serviceBindings = { FORWARD_QUEUE: { name: "flaky-queue", entrypoint: "FlakyQueue" } };
    await withRelay({ queues: true, workers: [flaky], serviceBindings }, async (relay) => {
      const callback = buildCallback({ ...creds, xml: text(), mode: "safe" });
      const first = await post(relay, callback);
      assert.ok(first.status >= 500, `status ${first.status}`);
      assert.match(await first.text(), /queue/);
      await relay.settle(800);
      assert.equal(hooks(relay.sent).length, 0);
      const retry = await post(relay, callback);
      assert.equal(retry.status, 200);
      await relay.waitFor((s) => hooks(s).length === 1);
      await relay.settle(800);
      assert.equal(hooks(relay.sent).length, 1, "delivered once");
    });
  });
});

describe("without a queue", () => {
  test("a receiver that is down leaves a dead letter after 4 attempts; replay delivers it", async () => {
    let down = true;
    const upstream = () => new Response(null, { status: down ? 502 : 200 });
    await withRelay({ upstream, bindings: { ADMIN_API_KEY: ADMIN } }, async (relay) => {
      assert.equal((await post(relay, buildCallback({ ...creds, xml: text(), mode: "plain" }))).status, 200);
      const [letter] = await eventually(async () => {
        const l = await deadLetters(relay);
        return l.length === 1 && l;
      }, 20_000);
      assert.equal(letter.attempts, 4);
      assert.equal(hooks(relay.sent).length, 4);
      down = false;
      const replay = await (await relay.fetch("/admin/replay", { method: "POST", headers: admin })).json();
      assert.equal(replay.delivered, 1);
      assert.equal(hooks(relay.sent).length, 5);
      assert.equal(hooks(relay.sent)[4].headers["webhook-id"], letter.id);
      assert.equal((await deadLetters(relay)).length, 0);
    });
  });

  test("FORWARD_MODE=direct with a queue: one attempt after the answer, failures go to the retry schedule", async () => {
    let calls = 0;
    const upstream = () => new Response(null, { status: ++calls === 1 ? 503 : 200 });
    await withRelay({ queues: true, upstream, bindings: { FORWARD_MODE: "direct", FORWARD_RETRY_DELAYS: "1s" } }, async (relay) => {
      assert.equal((await post(relay, buildCallback({ ...creds, xml: text(), mode: "plain" }))).status, 200);
      await relay.waitFor((s) => hooks(s).length === 2, 10_000);
      const [a, b] = hooks(relay.sent);
      assert.ok(b.at - a.at >= 900, "retried by the queue after its delay");
      assert.equal(a.headers["webhook-id"], b.headers["webhook-id"]);
    });
  });
});

describe("routing", () => {
  test("each key shape, a service-binding target, and events that match nothing", async () => {
    const backend = [];
    const serviceBindings = {
      BACKEND: async (request) => {
        backend.push({ url: request.url, headers: Object.fromEntries(request.headers), body: await request.text() });
        return new Response(null, { status: 200 });
      },
    };
    const routes = { text: ["http://hooks.test/text"], "event.subscribe": ["service:BACKEND/wechat"], "*": ["http://hooks.test/all"] };
    const bindings = { FORWARD_URLS: undefined, FORWARD_ROUTES: JSON.stringify(routes) };
    await withRelay({ queues: true, serviceBindings, bindings }, async (relay) => {
      await post(relay, buildCallback({ ...creds, xml: text(), mode: "plain" }));
      const subscribe = messageXml({ from: "o_sub", fields: { MsgType: "event", Event: "subscribe", EventKey: "" } });
      await post(relay, buildCallback({ ...creds, xml: subscribe, mode: "safe" }));
      await relay.waitFor((s) => hooks(s, "/all").length === 2);
      await eventually(() => backend.length === 1);
      await relay.settle(500);
      assert.equal(hooks(relay.sent, "/text").length, 1);
      assert.equal(JSON.parse(hooks(relay.sent, "/text")[0].body).type, "text");
      assert.equal(backend.length, 1);
      assert.equal(new URL(backend[0].url).pathname, "/wechat");
      assert.equal(JSON.parse(backend[0].body).event, "subscribe");
      assert.ok(backend[0].headers["webhook-signature"], "service targets are signed too");
    });
    await withRelay({ queues: true, bindings: { FORWARD_URLS: undefined, FORWARD_ROUTES: JSON.stringify({ image: ["http://hooks.test/img"] }) } }, async (relay) => {
      const res = await post(relay, buildCallback({ ...creds, xml: text(), mode: "plain" }));
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "success");
      await relay.settle(800);
      assert.equal(relay.sent.length, 0);
      assert.match(relay.logs.join(""), /matches no route/);
    });
  });

  test("a bad route document is a 500 naming FORWARD_ROUTES, and nothing is forwarded", async () => {
    for (const doc of ["{not json", JSON.stringify({ "foo.bar": ["http://hooks.test/x"] }), JSON.stringify({ text: ["service:MISSING"] }), JSON.stringify({ text: ["ftp://x"] })]) {
      await withRelay({ queues: true, bindings: { FORWARD_ROUTES: doc } }, async (relay) => {
        const res = await post(relay, buildCallback({ ...creds, xml: text(), mode: "plain" }));
        assert.equal(res.status, 500, doc);
        assert.match(await res.text(), /FORWARD_ROUTES/);
        await relay.settle(300);
        assert.equal(relay.sent.length, 0);
      });
    }
  });
});

describe("passive replies", () => {
  const REPLY_URL = "http://replies.test/reply";
  /** An element's text, CDATA sections (also when split around "]]>") joined. */
  const field = (xml, name) => {
    const inner = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(xml)?.[1];
    return inner?.replace(/<!\[CDATA\[([\s\S]*?)\]\]>/g, "$1");
  };

  /** What WeChat does with a safe-mode reply: check MsgSignature, decrypt, check the AppID. */
  function openReply(body) {
    const encrypt = field(body, "Encrypt");
    const ts = field(body, "TimeStamp");
    const nonce = field(body, "Nonce");
    assert.equal(field(body, "MsgSignature"), sha1Sorted(DEMO.WECHAT_TOKEN, ts, nonce, encrypt));
    const { message, appId } = decrypt(DEMO.WECHAT_ENCODING_AES_KEY, encrypt);
    assert.equal(appId, DEMO.WECHAT_APP_ID);
    return message;
  }

  const cases = [
    [{ type: "text", content: "你好 ]]> 😀" }, (x) => assert.equal(field(x, "Content"), "你好 ]]> 😀")],
    [{ type: "image", media_id: "MEDIA_1" }, (x) => assert.match(x, /<Image><MediaId><!\[CDATA\[MEDIA_1\]\]><\/MediaId><\/Image>/)],
    [{ type: "voice", media_id: "MEDIA_2" }, (x) => assert.match(x, /<Voice><MediaId><!\[CDATA\[MEDIA_2\]\]>/)],
    [{ type: "video", media_id: "M3", title: "T", description: "D" }, (x) => assert.match(x, /<Video><MediaId><!\[CDATA\[M3\]\]><\/MediaId><Title><!\[CDATA\[T\]\]><\/Title><Description><!\[CDATA\[D\]\]>/)],
    [{ type: "music", title: "T", description: "D", music_url: "http://m", hq_music_url: "http://h", thumb_media_id: "TH" }, (x) => assert.match(x, /<HQMusicUrl><!\[CDATA\[http:\/\/h\]\]><\/HQMusicUrl><ThumbMediaId><!\[CDATA\[TH\]\]>/)],
    [{ type: "news", articles: [{ title: "A", description: "d", pic_url: "http://p", url: "http://u" }, { title: "B" }] }, (x) => {
      assert.equal(field(x, "ArticleCount"), "2");
      assert.equal((x.match(/<item>/g) ?? []).length, 2);
    }],
    [{ type: "transfer_customer_service", kf_account: "kf2001@gh" }, (x) => assert.match(x, /<TransInfo><KfAccount><!\[CDATA\[kf2001@gh\]\]>/)],
  ];

  for (const mode of ["plain", "safe"]) {
    test(`every reply type, ${mode} mode`, async () => {
      let answer = null;
      const upstream = (req) => (req.url === REPLY_URL ? Response.json(answer) : new Response(null, { status: 200 }));
      await withRelay({ queues: true, upstream, bindings: { REPLY_URL } }, async (relay) => {
        for (const [reply, check] of cases) {
          answer = reply;
          const from = `o_reply_${++n}`;
          const res = await post(relay, buildCallback({ ...creds, xml: messageXml({ from, fields: { MsgType: "text", Content: "hi" } }), mode }));
          assert.equal(res.status, 200);
          const body = await res.text();
          const xml = mode === "plain" ? body : openReply(body);
          assert.equal(field(xml, "MsgType"), reply.type);
          assert.equal(field(xml, "ToUserName"), from);
          assert.equal(field(xml, "FromUserName"), "gh_demo_account");
          check(xml);
        }
        const asked = relay.sent.filter((s) => s.url === REPLY_URL);
        assert.equal(asked.length, cases.length);
        assert.ok(asked.every((s) => s.headers["webhook-signature"]), "the reply receiver gets signed events");
        await relay.waitFor((s) => hooks(s).length === cases.length);
      });
    });
  }

  test("a slow REPLY_URL is answered success within 5 s, still forwarded, and its late reply goes through the customer-service API", async () => {
    const wechat = fakeWeChat();
    let customSent = null;
    wechat.state.routes["/cgi-bin/message/custom/send"] = (call) => {
      customSent = { body: JSON.parse(call.body), token: call.query.access_token };
      return Response.json({ errcode: 0, errmsg: "ok" });
    };
    const upstream = async (req) => {
      if (req.url === REPLY_URL) {
        await sleep(3_600);
        return Response.json({ type: "text", content: "late but here" });
      }
      if (req.url.startsWith("http://wechat.test/")) return wechat.handle(req);
      return new Response(null, { status: 200 });
    };
    const bindings = { REPLY_URL, WECHAT_API_BASE: "http://wechat.test", WECHAT_APP_SECRET: "s3cret" };
    await withRelay({ queues: true, upstream, bindings }, async (relay) => {
      const from = `o_late_${++n}`;
      const started = Date.now();
      const res = await post(relay, buildCallback({ ...creds, xml: messageXml({ from, fields: { MsgType: "text", Content: "hi" } }), mode: "safe" }));
      const took = Date.now() - started;
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "success");
      assert.ok(took < 4_500, `answered in ${took} ms`);
      await relay.waitFor((s) => hooks(s).length === 1);
      await eventually(() => customSent, 10_000);
      assert.deepEqual(customSent.body, { touser: from, msgtype: "text", text: { content: "late but here" } });
      assert.equal(customSent.token, wechat.state.current);
    });
  });

  test("no reply, an error or an invalid reply: success, and the event is still forwarded", async () => {
    const answers = [() => new Response(null, { status: 204 }), () => new Response("oops", { status: 500 }), () => Response.json({ type: "dance" }), () => new Response("<xml/>")];
    for (const make of answers) {
      const upstream = (req) => (req.url === REPLY_URL ? make() : new Response(null, { status: 200 }));
      await withRelay({ queues: true, upstream, bindings: { REPLY_URL } }, async (relay) => {
        const res = await post(relay, buildCallback({ ...creds, xml: text(), mode: "safe" }));
        assert.equal(await res.text(), "success");
        await relay.waitFor((s) => hooks(s).length === 1);
      });
    }
  });
});

describe("admin routes", () => {
  test("401 without or with a wrong key; 404 when ADMIN_API_KEY is unset", async () => {
    await withRelay({ bindings: { ADMIN_API_KEY: ADMIN, TOKEN_API_KEY: "token-key" } }, async (relay) => {
      for (const headers of [{}, { authorization: "Bearer nope" }, { authorization: "Bearer token-key" }, { authorization: ADMIN }]) {
        for (const [path, method] of [["/admin/dead-letters", "GET"], ["/admin/replay", "POST"]]) {
          const res = await relay.fetch(path, { method, headers });
          assert.equal(res.status, 401, `${method} ${path} ${JSON.stringify(headers)}`);
          assert.equal((await res.json()).error, "unauthorized");
        }
      }
      assert.equal((await relay.fetch("/admin/dead-letters", { method: "DELETE", headers: admin })).status, 405);
      assert.deepEqual(await deadLetters(relay), []);
    });
    await withRelay({}, async (relay) => {
      for (const [path, method] of [["/admin/dead-letters", "GET"], ["/admin/replay", "POST"]]) {
        const res = await relay.fetch(path, { method, headers: admin });
        assert.equal(res.status, 404);
        assert.equal((await res.json()).error, "not_found");
      }
    });
  });
});
