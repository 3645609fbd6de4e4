// The token service: /token, /token/refresh, /jsapi/signature, /api/<path> and the cron.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { startRelay } from "./harness.mjs";
import { fakeWeChat, JSSDK_TICKET } from "./fake-wechat.mjs";

const KEY = "test-token-api-key";
const AUTH = { authorization: `Bearer ${KEY}` };
const KV_KEY = "credential:default:access_token";
const now = () => Math.floor(Date.now() / 1000);

/**
 * A relay with the token service. Without `coordinator: true` it runs as without the COORDINATOR
 * binding, over KV (the fallback, and what these tests can look into); the account objects'
 * tests below pass it.
 */
async function withService(bindings, fn, { kv: bindKv = true, coordinator = false } = {}) {
  const wechat = fakeWeChat();
  const relay = await startRelay({
    kv: bindKv,
    coordinator,
    bindings: { WECHAT_API_BASE: "http://wechat.test", TOKEN_API_KEY: KEY, WECHAT_APP_ID: "wx_test_app", WECHAT_APP_SECRET: "s3cr3t-app-secret", ...bindings },
    upstream: (entry) => wechat.handle(entry),
  });
  try {
    const kv = bindKv ? await relay.mf.getKVNamespace("WECHAT_KV") : null;
    await fn({ relay, wechat, kv });
  } finally {
    await relay.dispose();
  }
}

const getToken = (relay, headers = AUTH) => relay.fetch("/token", { headers });

describe("auth", () => {
  test("no key or a wrong key is 401 JSON", async () => {
    await withService({}, async ({ relay, wechat }) => {
      for (const headers of [{}, { authorization: "Bearer nope" }, { authorization: KEY }, { authorization: `Basic ${KEY}` }]) {
        const res = await getToken(relay, headers);
        assert.equal(res.status, 401);
        assert.equal(res.headers.get("www-authenticate"), "Bearer");
        assert.equal((await res.json()).error, "unauthorized");
      }
      for (const [path, method] of [["/token/refresh", "POST"], ["/jsapi/signature?url=https://a.example/", "GET"], ["/api/cgi-bin/user/info", "GET"]]) {
        assert.equal((await relay.fetch(path, { method })).status, 401, path);
      }
      assert.equal(wechat.state.calls.length, 0);
    });
  });

  test("TOKEN_API_KEY unset: every token route is 404, never open", async () => {
    await withService({ TOKEN_API_KEY: undefined }, async ({ relay, wechat }) => {
      for (const [path, method] of [
        ["/token", "GET"],
        ["/token", "POST"],
        ["/token/refresh", "POST"],
        ["/token/refresh", "GET"],
        ["/jsapi/signature?url=https://a.example/", "GET"],
        ["/api/cgi-bin/user/info", "GET"],
        ["/api/cgi-bin/user/info", "DELETE"],
      ]) {
        const res = await relay.fetch(path, { method, headers: AUTH, body: method === "POST" ? "" : undefined });
        assert.equal(res.status, 404, path);
        assert.equal((await res.json()).error, "not_found");
      }
      assert.equal(wechat.state.calls.length, 0);
    });
  });
});

describe("GET /token", () => {
  test("fetches from stable_token once, stores it in KV, then serves KV", async () => {
    await withService({}, async ({ relay, wechat, kv }) => {
      const res = await getToken(relay);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("cache-control"), "no-store");
      const body = await res.json();
      assert.equal(body.access_token, wechat.state.current);
      assert.ok(Math.abs(body.expires_at - (now() + 7200)) <= 2);
      const [call] = wechat.tokenCalls();
      assert.equal(call.method, "POST");
      assert.equal(call.path, "/cgi-bin/stable_token");
      assert.deepEqual(JSON.parse(call.body), { grant_type: "client_credential", appid: "wx_test_app", secret: "s3cr3t-app-secret", force_refresh: false });
      const stored = await kv.get(KV_KEY, "json");
      assert.equal(stored.access_token, body.access_token);
      assert.equal(stored.expires_at, body.expires_at);
      assert.ok(Math.abs(stored.fetched_at - now()) <= 2);
      for (let i = 0; i < 3; i++) assert.equal((await (await getToken(relay)).json()).access_token, body.access_token);
      assert.equal(wechat.tokenCalls().length, 1);
    });
  });

  test("N concurrent calls cause one upstream fetch", async () => {
    await withService({}, async ({ relay, wechat }) => {
      wechat.state.delayMs = 300;
      const answers = await Promise.all(Array.from({ length: 12 }, () => getToken(relay).then((r) => r.json())));
      assert.equal(wechat.tokenCalls().length, 1);
      assert.equal(new Set(answers.map((a) => a.access_token)).size, 1);
    });
  });

  test("the cached token is served until 5 minutes before expiry, refreshed after", async () => {
    await withService({}, async ({ relay, wechat, kv }) => {
      await kv.put(KV_KEY, JSON.stringify({ access_token: "CACHED", expires_at: now() + 310, fetched_at: now() - 6890 }));
      assert.equal((await (await getToken(relay)).json()).access_token, "CACHED");
      assert.equal(wechat.tokenCalls().length, 0);
      await kv.put(KV_KEY, JSON.stringify({ access_token: "CACHED", expires_at: now() + 295, fetched_at: now() - 6905 }));
      const body = await (await getToken(relay)).json();
      assert.notEqual(body.access_token, "CACHED");
      assert.equal(wechat.tokenCalls().length, 1);
      assert.equal((await kv.get(KV_KEY, "json")).access_token, body.access_token);
    });
  });

  test("a failed refresh serves the stored token while it is still valid", async () => {
    await withService({}, async ({ relay, wechat, kv }) => {
      await kv.put(KV_KEY, JSON.stringify({ access_token: "STILL_VALID", expires_at: now() + 200, fetched_at: now() - 7000 }));
      wechat.state.tokenErrors = [45009];
      const res = await getToken(relay);
      assert.equal(res.status, 200);
      assert.equal((await res.json()).access_token, "STILL_VALID");
      assert.equal(wechat.tokenCalls().length, 1);
      assert.match(relay.logs.join(""), /serving the stored credential/);
      // Within 30 s of expiry it is no longer handed out: the error is.
      await kv.put(KV_KEY, JSON.stringify({ access_token: "ALMOST_GONE", expires_at: now() + 20, fetched_at: now() - 7180 }));
      wechat.state.tokenErrors = [45009];
      assert.equal((await getToken(relay)).status, 502);
    });
  });

  test("without a WECHAT_KV binding tokens are still served (fetched from WeChat)", async () => {
    await withService(
      {},
      async ({ relay, wechat }) => {
        const res = await getToken(relay);
        assert.equal(res.status, 200);
        assert.equal((await res.json()).access_token, wechat.state.current);
        assert.match(relay.logs.join(""), /WECHAT_KV binding missing/);
      },
      { kv: false },
    );
  });

  test("WECHAT_TOKEN_ENDPOINT=classic uses GET /cgi-bin/token", async () => {
    await withService({ WECHAT_TOKEN_ENDPOINT: "classic" }, async ({ relay, wechat }) => {
      assert.equal((await getToken(relay)).status, 200);
      const [call] = wechat.tokenCalls();
      assert.equal(call.method, "GET");
      assert.equal(call.path, "/cgi-bin/token");
      assert.deepEqual(call.query, { grant_type: "client_credential", appid: "wx_test_app", secret: "s3cr3t-app-secret" });
    });
  });
});

describe("errors", () => {
  const cases = [40164, 40013, 40125, 40001, 45009, 48001];
  for (const errcode of cases) {
    test(`errcode ${errcode} is a 502 JSON with a hint`, async () => {
      await withService({}, async ({ relay, wechat }) => {
        wechat.state.tokenErrors = [errcode];
        const res = await getToken(relay);
        assert.equal(res.status, 502);
        const body = await res.json();
        assert.equal(body.error, "wechat_error");
        assert.equal(body.errcode, errcode);
        assert.equal(body.errmsg, `fake error ${errcode}`);
        assert.ok(body.hint && body.hint.length > 20, JSON.stringify(body));
        const text = JSON.stringify(body) + relay.logs.join("");
        assert.ok(!text.includes("s3cr3t-app-secret"), "AppSecret leaked");
      });
    });
  }

  test("errcode 40164 names the IP whitelist and WECHAT_API_BASE; 48001 names account kinds", async () => {
    await withService({}, async ({ relay, wechat }) => {
      wechat.state.tokenErrors = [40164];
      assert.match((await (await getToken(relay)).json()).hint, /whitelist.*WECHAT_API_BASE/s);
      wechat.state.tokenErrors = [48001];
      assert.match((await (await getToken(relay)).json()).hint, /Subscription/);
    });
  });

  test("errcode -1 is retried once after a pause", async () => {
    await withService({}, async ({ relay, wechat }) => {
      wechat.state.tokenErrors = [-1];
      const res = await getToken(relay);
      assert.equal(res.status, 200);
      assert.equal(wechat.tokenCalls().length, 2);
      wechat.state.tokenErrors = [-1, -1];
      await (await relay.mf.getKVNamespace("WECHAT_KV")).delete(KV_KEY);
      const busy = await getToken(relay);
      assert.equal(busy.status, 502);
      assert.equal((await busy.json()).errcode, -1);
      assert.ok(busy.headers.get("retry-after"));
    });
  });

  test("WeChat unreachable is 503 with Retry-After", async () => {
    await withService({}, async ({ relay, wechat }) => {
      wechat.state.down = true;
      const res = await getToken(relay);
      assert.equal(res.status, 503);
      assert.equal(res.headers.get("retry-after"), "5");
      assert.equal((await res.json()).error, "wechat_unreachable");
    });
  });

  test("a missing WECHAT_APP_SECRET is named", async () => {
    await withService({ WECHAT_APP_SECRET: undefined }, async ({ relay }) => {
      const res = await getToken(relay);
      assert.equal(res.status, 500);
      const body = await res.json();
      assert.equal(body.error, "configuration");
      assert.match(body.message, /WECHAT_APP_SECRET/);
    });
  });

  test("tokens never appear whole in logs", async () => {
    await withService({}, async ({ relay, wechat }) => {
      await getToken(relay);
      await relay.fetch("/token/refresh", { method: "POST", headers: AUTH });
      const logs = relay.logs.join("");
      assert.match(logs, /access token fetched/);
      for (let i = 1; i <= wechat.state.issued; i++) assert.ok(!logs.includes(`TOKEN_${i}_`), "token leaked to logs");
    });
  });
});

describe("POST /token/refresh", () => {
  test("forces a refresh at most once a minute", async () => {
    await withService({}, async ({ relay, wechat }) => {
      const first = await (await getToken(relay)).json();
      const r1 = await relay.fetch("/token/refresh", { method: "POST", headers: AUTH });
      assert.equal(r1.status, 200);
      const b1 = await r1.json();
      assert.equal(b1.refreshed, true);
      assert.notEqual(b1.access_token, first.access_token);
      assert.equal(JSON.parse(wechat.tokenCalls()[1].body).force_refresh, true);
      const b2 = await (await relay.fetch("/token/refresh", { method: "POST", headers: AUTH })).json();
      assert.equal(b2.refreshed, false);
      assert.equal(b2.access_token, b1.access_token);
      assert.equal(wechat.tokenCalls().length, 2);
    });
  });
  test("two refreshes naming the same refused token at once make one upstream call", async () => {
    await withService({}, async ({ relay, wechat }) => {
      const first = await (await getToken(relay)).json();
      const refuse = () =>
        relay.fetch("/token/refresh", { method: "POST", headers: { ...AUTH, "content-type": "application/json" }, body: JSON.stringify({ access_token: first.access_token }) });
      const answers = await Promise.all([refuse(), refuse()]);
      const bodies = await Promise.all(answers.map((r) => r.json()));
      assert.deepEqual(answers.map((r) => r.status), [200, 200]);
      assert.equal(wechat.tokenCalls().length, 2, "one forced refresh for both");
      assert.equal(bodies[0].access_token, bodies[1].access_token);
      assert.notEqual(bodies[0].access_token, first.access_token);
      // Naming a token that was already replaced: the current one, WeChat not asked.
      const late = await (await refuse()).json();
      assert.equal(late.refreshed, false);
      assert.equal(late.access_token, bodies[0].access_token);
      assert.equal(wechat.tokenCalls().length, 2);
    }, { coordinator: true });
  });
  test("a body that is not {\"access_token\": \"…\"} is 400 and asks WeChat nothing", async () => {
    await withService({}, async ({ relay, wechat }) => {
      for (const body of ["access_token=x", "[1]", '{"access_token": 7}', "{"]) {
        const res = await relay.fetch("/token/refresh", { method: "POST", headers: AUTH, body });
        assert.equal(res.status, 400, body);
        assert.equal((await res.json()).error, "bad_request");
      }
      assert.equal(wechat.tokenCalls().length, 0);
    }, { coordinator: true });
  });
  test("GET is 405", async () => {
    await withService({}, async ({ relay }) => {
      assert.equal((await relay.fetch("/token/refresh", { headers: AUTH })).status, 405);
    });
  });
});

describe("scheduled refresh", () => {
  test("renews a token that expires within 15 minutes, leaves a fresh one alone", async () => {
    await withService({}, async ({ relay, wechat, kv }) => {
      const worker = await relay.mf.getWorker();
      await kv.put(KV_KEY, JSON.stringify({ access_token: "FRESH", expires_at: now() + 3600, fetched_at: now() }));
      await worker.scheduled({ cron: "*/5 * * * *" });
      assert.equal(wechat.tokenCalls().length, 0);
      await kv.put(KV_KEY, JSON.stringify({ access_token: "OLD", expires_at: now() + 600, fetched_at: now() - 6600 }));
      await worker.scheduled({ cron: "*/5 * * * *" });
      assert.equal(wechat.tokenCalls().length, 1);
      assert.equal((await kv.get(KV_KEY, "json")).access_token, wechat.state.current);
    });
  });
  test("fetches when KV has no token, and renews the JS-SDK ticket when in use", async () => {
    await withService({}, async ({ relay, wechat, kv }) => {
      const worker = await relay.mf.getWorker();
      await worker.scheduled({ cron: "*/5 * * * *" });
      assert.equal(wechat.tokenCalls().length, 1);
      await kv.put("credential:default:jsapi_ticket", JSON.stringify({ ticket: "OLD", expires_at: now() + 60, fetched_at: now() - 7140 }));
      await worker.scheduled({ cron: "*/5 * * * *" });
      assert.equal((await kv.get("credential:default:jsapi_ticket", "json")).ticket, JSSDK_TICKET);
    });
  });
});

describe("GET /jsapi/signature", () => {
  test("signs the URL without its fragment by the JS-SDK algorithm", async () => {
    await withService({}, async ({ relay }) => {
      const url = "http://mp.weixin.qq.com?params=value";
      const res = await relay.fetch(`/jsapi/signature?url=${encodeURIComponent(url + "#frag")}`, { headers: AUTH });
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.deepEqual(Object.keys(body).sort(), ["appId", "nonceStr", "signature", "timestamp"]);
      assert.equal(body.appId, "wx_test_app");
      assert.match(body.nonceStr, /^[A-Za-z0-9]{16}$/);
      assert.ok(Math.abs(body.timestamp - now()) <= 2);
      const expected = crypto
        .createHash("sha1")
        .update(`jsapi_ticket=${JSSDK_TICKET}&noncestr=${body.nonceStr}&timestamp=${body.timestamp}&url=${url}`)
        .digest("hex");
      assert.equal(body.signature, expected);
    });
  });
  test("the documented example checks out with the same algorithm", () => {
    const sig = crypto
      .createHash("sha1")
      .update(`jsapi_ticket=${JSSDK_TICKET}&noncestr=Wm3WZYTPz0wzccnW&timestamp=1414587457&url=http://mp.weixin.qq.com?params=value`)
      .digest("hex");
    assert.equal(sig, "0f9de62fce790f9a083d5c99e95740ceb90c27ed");
  });
  test("a ticket fetch refused with 40001 refreshes the token once and retries", async () => {
    await withService({}, async ({ relay, wechat, kv }) => {
      await kv.put(KV_KEY, JSON.stringify({ access_token: "REVOKED", expires_at: now() + 7000, fetched_at: now() }));
      const res = await relay.fetch(`/jsapi/signature?url=${encodeURIComponent("https://a.example/page")}`, { headers: AUTH });
      assert.equal(res.status, 200);
      const tickets = wechat.state.calls.filter((c) => c.path === "/cgi-bin/ticket/getticket");
      assert.equal(tickets.length, 2);
      assert.equal(tickets[0].query.access_token, "REVOKED");
      assert.equal(tickets[1].query.access_token, wechat.state.current);
      assert.equal(tickets[1].query.type, "jsapi");
      assert.equal(JSON.parse(wechat.tokenCalls()[0].body).force_refresh, true);
      assert.equal((await kv.get("credential:default:jsapi_ticket", "json")).ticket, JSSDK_TICKET);
    });
  });
  test("a missing or non-http url is 400", async () => {
    await withService({}, async ({ relay }) => {
      assert.equal((await relay.fetch("/jsapi/signature", { headers: AUTH })).status, 400);
      assert.equal((await relay.fetch("/jsapi/signature?url=javascript:alert(1)", { headers: AUTH })).status, 400);
    });
  });
});

describe("ANY /api/<path>", () => {
  test("adds the token, forwards method, query, body and content type, never Authorization", async () => {
    await withService({}, async ({ relay, wechat }) => {
      wechat.state.routes["/cgi-bin/message/custom/send"] = (call) => new Response(JSON.stringify({ errcode: 0, errmsg: "ok", echo: call.body }), { headers: { "content-type": "application/json" } });
      const payload = JSON.stringify({ touser: "o_1", msgtype: "text", text: { content: "你好" } });
      const res = await relay.fetch("/api/cgi-bin/message/custom/send?foo=bar&access_token=caller-supplied", {
        method: "POST",
        headers: { ...AUTH, "content-type": "application/json" },
        body: payload,
      });
      assert.equal(res.status, 200);
      assert.equal((await res.json()).echo, payload);
      const call = wechat.state.calls.find((c) => c.path === "/cgi-bin/message/custom/send");
      assert.equal(call.method, "POST");
      assert.equal(call.query.access_token, wechat.state.current);
      assert.equal(call.query.foo, "bar");
      assert.equal(call.headers["content-type"], "application/json");
      for (const c of wechat.state.calls) assert.equal(c.headers.authorization, undefined, "Authorization leaked to WeChat");
    });
  });

  test("streams non-JSON answers (media) through unchanged", async () => {
    await withService({}, async ({ relay, wechat }) => {
      const image = crypto.randomBytes(4096);
      wechat.state.routes["/cgi-bin/media/get"] = () => new Response(image, { headers: { "content-type": "image/jpeg" } });
      const res = await relay.fetch("/api/cgi-bin/media/get?media_id=m1", { headers: AUTH });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "image/jpeg");
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), image);
    });
  });

  test("after 40001 it refreshes once and retries once", async () => {
    await withService({}, async ({ relay, wechat }) => {
      let seen = 0;
      wechat.state.routes["/cgi-bin/user/info"] = (call, current) => {
        seen += 1;
        return new Response(JSON.stringify(seen === 1 ? { errcode: 40001, errmsg: "invalid credential" } : { openid: call.query.openid, token_ok: call.query.access_token === current }), { headers: { "content-type": "text/plain" } });
      };
      const res = await relay.fetch("/api/cgi-bin/user/info?openid=o_1", { headers: AUTH });
      const body = await res.json();
      assert.equal(body.openid, "o_1");
      assert.equal(body.token_ok, true);
      assert.equal(seen, 2);
      const calls = wechat.state.calls.filter((c) => c.path === "/cgi-bin/user/info");
      assert.notEqual(calls[0].query.access_token, calls[1].query.access_token);
      assert.equal(JSON.parse(wechat.tokenCalls()[1].body).force_refresh, true);
    });
  });

  test("a second 40001 is answered as WeChat sent it: one retry only", async () => {
    await withService({}, async ({ relay, wechat }) => {
      wechat.state.routes["/cgi-bin/user/info"] = () => new Response(JSON.stringify({ errcode: 40001, errmsg: "invalid credential" }));
      const res = await relay.fetch("/api/cgi-bin/user/info?openid=o_1", { headers: AUTH });
      assert.equal((await res.json()).errcode, 40001);
      assert.equal(wechat.state.calls.filter((c) => c.path === "/cgi-bin/user/info").length, 2);
    });
  });

  test("paths outside cgi-bin/, sns/, wxa/, datacube/, customservice/ are 404", async () => {
    await withService({}, async ({ relay, wechat }) => {
      for (const p of ["/api/admin/x", "/api/", "/api/cgi-bin", "/api/cgi-bin%2F..%2Fadmin", "/api/cgi-bin/a%2f..%2f..%2fx"]) {
        const res = await relay.fetch(p, { headers: AUTH });
        assert.equal(res.status, 404, p);
      }
      for (const p of ["/api/sns/x", "/api/wxa/x", "/api/datacube/x", "/api/customservice/x"]) {
        assert.equal((await relay.fetch(p, { headers: AUTH })).status, 200, p);
      }
      assert.ok(wechat.state.calls.every((c) => /^\/(cgi-bin|sns|wxa|datacube|customservice)\//.test(c.path)));
    });
  });
});

describe("the account's object keeps its token", () => {
  test("the token is kept by the object, not in KV, and survives a restart", async () => {
    const fs = await import("node:fs");
    const os = await import("node:os");
    const path = await import("node:path");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "relay-tokens-"));
    const wechat = fakeWeChat();
    const start = () =>
      startRelay({
        persist: dir,
        bindings: { WECHAT_API_BASE: "http://wechat.test", TOKEN_API_KEY: KEY, WECHAT_APP_ID: "wx_test_app", WECHAT_APP_SECRET: "s3cr3t-app-secret" },
        upstream: (entry) => wechat.handle(entry),
      });
    try {
      let relay = await start();
      const first = await (await getToken(relay)).json();
      assert.equal(await (await relay.mf.getKVNamespace("WECHAT_KV")).get(KV_KEY), null);
      await relay.dispose();
      relay = await start();
      const again = await (await getToken(relay)).json();
      await relay.dispose();
      assert.equal(again.access_token, first.access_token);
      assert.equal(wechat.tokenCalls().length, 1, "WeChat asked once across the restart");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
