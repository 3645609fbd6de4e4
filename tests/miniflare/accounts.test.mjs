// Every account kind in one deployment: a service account, a WeCom app and a Mini Program, each
// configured only through bindings, each forwarding the same envelope with its own account,
// each with its own tokens; cross-account refusals; bad WECHAT_ACCOUNTS documents.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { startRelay, root } from "./harness.mjs";
import { buildCallback, messageXml, messageJson, encrypt, sha1Sorted } from "../../tools/wechat.mjs";
import { fakeWeChat } from "./fake-wechat.mjs";

const schema = JSON.parse(fs.readFileSync(path.join(root, "schema/event.schema.json"), "utf8"));
const ajv = new Ajv2020({ allErrors: true });
addFormats(ajv);
const validateEvent = ajv.compile(schema);

const vectors = JSON.parse(fs.readFileSync(path.join(root, "tests/vectors/official.json"), "utf8"));
const vector = (part) => vectors.decrypt.find((v) => v.name.includes(part));

// The service account, and the official samples' secrets for the WeCom app and the Mini Program.
const SHOP = { token: "shoptoken", encodingAesKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", appId: "wxshop0000000000" };
const STAFF = { token: "QDG6eK", encodingAesKey: "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", appId: "wx5823bf96d3bd56c7" };
const MINI = { token: "AAAAA", encodingAesKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", appId: "wxba5fad812f8e6fb9" };
const KEY = "token-api-key";
const AUTH = { authorization: `Bearer ${KEY}` };

const ACCOUNTS = {
  shop: { kind: "official", app_id: SHOP.appId },
  staff: { kind: "wecom", corp_id: STAFF.appId, agent_id: "218" },
  mini: { kind: "miniprogram", app_id: MINI.appId, format: "json" },
};

const bindings = {
  WECHAT_ACCOUNTS: JSON.stringify(ACCOUNTS),
  WECHAT_SHOP_TOKEN: SHOP.token,
  WECHAT_SHOP_ENCODING_AES_KEY: SHOP.encodingAesKey,
  WECHAT_SHOP_APP_SECRET: "shop-secret",
  WECHAT_STAFF_TOKEN: STAFF.token,
  WECHAT_STAFF_ENCODING_AES_KEY: STAFF.encodingAesKey,
  WECHAT_STAFF_APP_SECRET: "staff-secret",
  WECHAT_MINI_TOKEN: MINI.token,
  WECHAT_MINI_ENCODING_AES_KEY: MINI.encodingAesKey,
  WECHAT_MINI_APP_SECRET: "mini-secret",
  WECHAT_API_BASE: "http://wechat.test",
  WECOM_API_BASE: "http://wecom.test",
  TOKEN_API_KEY: KEY,
};

let relay;
const wechat = fakeWeChat();
const wecom = fakeWeChat({ prefix: "WECOM" });
before(async () => {
  relay = await startRelay({
    bindings,
    upstream: (entry) => {
      if (entry.url.startsWith("http://wechat.test/")) return wechat.handle(entry);
      if (entry.url.startsWith("http://wecom.test/")) return wecom.handle(entry);
      return new Response(null, { status: 204 });
    },
  });
});
after(() => relay.dispose());

const hooks = () => relay.sent.filter((s) => s.url === "http://hooks.test/a");
const eventFor = async (from) => {
  await relay.waitFor((s) => s.some((r) => r.url === "http://hooks.test/a" && r.body.includes(`"${from}"`)));
  return JSON.parse(hooks().find((r) => r.body.includes(`"${from}"`)).body);
};

/** A WeCom callback as WeCom sends it: msg_signature, timestamp, nonce; Encrypt and AgentID. */
function wecomCallback(xml, { agentId = "218", creds = STAFF } = {}) {
  const ts = String(Math.floor(Date.now() / 1000));
  const nonce = String(Math.floor(Math.random() * 1e9));
  const enc = encrypt(creds.encodingAesKey, creds.appId, xml);
  const query = new URLSearchParams({ msg_signature: sha1Sorted(creds.token, ts, nonce, enc), timestamp: ts, nonce });
  const body = `<xml><ToUserName><![CDATA[${creds.appId}]]></ToUserName><Encrypt><![CDATA[${enc}]]></Encrypt><AgentID><![CDATA[${agentId}]]></AgentID></xml>`;
  return { query, body };
}

describe("URL verification per kind", () => {
  test("a service account echoes its echostr; a Mini Program too", async () => {
    for (const [name, creds] of [["shop", SHOP], ["mini", MINI]]) {
      const ts = String(Math.floor(Date.now() / 1000));
      const q = new URLSearchParams({ signature: sha1Sorted(creds.token, ts, "n1"), timestamp: ts, nonce: "n1", echostr: "echo-123" });
      const res = await relay.fetch(`/wechat/${name}?${q}`);
      assert.equal(res.status, 200, name);
      assert.equal(await res.text(), "echo-123");
    }
  });

  test("a WeCom app answers the decrypted echostr, and the official sample's", async () => {
    const ts = String(Math.floor(Date.now() / 1000));
    const echostr = encrypt(STAFF.encodingAesKey, STAFF.appId, "plain-echo-4242");
    const q = new URLSearchParams({ msg_signature: sha1Sorted(STAFF.token, ts, "n2", echostr), timestamp: ts, nonce: "n2", echostr });
    const res = await relay.fetch(`/wechat/staff?${q}`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "plain-echo-4242");
    const wrongKey = encrypt(SHOP.encodingAesKey, STAFF.appId, "x");
    const q2 = new URLSearchParams({ msg_signature: sha1Sorted(STAFF.token, ts, "n3", wrongKey), timestamp: ts, nonce: "n3", echostr: wrongKey });
    assert.equal((await relay.fetch(`/wechat/staff?${q2}`)).status, 401);
    // The official sample's echostr, signed now (its own timestamp is outside any window).
    const old = await startRelay({ bindings });
    try {
      const v = vector("Sample.cs) GET");
      assert.equal(sha1Sorted(v.token, v.timestamp, v.nonce, v.encrypt), v.msg_signature);
      const now = String(Math.floor(Date.now() / 1000));
      const q3 = new URLSearchParams({ msg_signature: sha1Sorted(v.token, now, v.nonce, v.encrypt), timestamp: now, nonce: v.nonce, echostr: v.encrypt });
      const sample = await old.fetch(`/wechat/staff?${q3}`);
      assert.equal(await sample.text(), "1616140317555161061");
    } finally {
      await old.dispose();
    }
  });
});

describe("callbacks per kind, in one deployment", () => {
  test("service account, WeCom app and Mini Program each forward the envelope with their own account", async () => {
    const shopXml = messageXml({ from: "o_shop_user", fields: { MsgType: "text", Content: "from shop" } });
    const shop = buildCallback({ ...SHOP, xml: shopXml, mode: "safe" });
    assert.equal((await relay.fetch(`/wechat/shop?${shop.query}`, { method: "POST", body: shop.body })).status, 200);

    const staffXml = messageXml({ to: STAFF.appId, from: "zhangsan", fields: { MsgType: "event", Event: "enter_agent", EventKey: "", AgentID: "218" } });
    const staff = wecomCallback(staffXml);
    const staffRes = await relay.fetch(`/wechat/staff?${staff.query}`, { method: "POST", body: staff.body });
    assert.equal(staffRes.status, 200);
    assert.equal(await staffRes.text(), "success");

    const miniJson = messageJson({ to: "gh_mini", from: "o_mini_user", fields: { MsgType: "text", Content: "from mini" } });
    const mini = buildCallback({ ...MINI, xml: miniJson, mode: "safe" });
    assert.equal((await relay.fetch(`/wechat/mini?${mini.query}`, { method: "POST", body: mini.body })).status, 200);

    const events = [await eventFor("o_shop_user"), await eventFor("zhangsan"), await eventFor("o_mini_user")];
    for (const e of events) assert.ok(validateEvent(e), ajv.errorsText(validateEvent.errors));
    assert.deepEqual(events.map((e) => [e.account, e.app_id]), [["shop", SHOP.appId], ["staff", STAFF.appId], ["mini", MINI.appId]]);
    assert.equal(events[1].event, "enter_agent");
    assert.equal(events[1].data.agent_id, 218);
    assert.equal(events[2].data.content, "from mini");
  });

  test("the WeCom official sample through /wechat/<name>", async () => {
    // The official sample's ciphertext, signed now (its own timestamp is outside any window).
    const old = await startRelay({ bindings });
    try {
      const v = vector("Sample.cs) POST");
      assert.equal(sha1Sorted(v.token, v.timestamp, v.nonce, v.encrypt), v.msg_signature);
      const now = String(Math.floor(Date.now() / 1000));
      const q = new URLSearchParams({ msg_signature: sha1Sorted(v.token, now, v.nonce, v.encrypt), timestamp: now, nonce: v.nonce });
      const body = `<xml><ToUserName><![CDATA[${STAFF.appId}]]></ToUserName><Encrypt><![CDATA[${v.encrypt}]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>`;
      const res = await old.fetch(`/wechat/staff?${q}`, { method: "POST", body });
      assert.equal(res.status, 200);
      await old.waitFor((s) => s.length === 1);
      const e = JSON.parse(old.sent[0].body);
      assert.deepEqual([e.account, e.type, e.data.content, e.data.agent_id], ["staff", "text", "hello", 218]);
    } finally {
      await old.dispose();
    }
  });

  test("the default account keeps working at /wechat and /wechat/default; unknown names are 404", async () => {
    const r = await startRelay({ bindings: { WECHAT_ACCOUNTS: JSON.stringify(ACCOUNTS), WECHAT_SHOP_TOKEN: SHOP.token } });
    try {
      const { DEMO } = await import("./harness.mjs");
      for (const p of ["/wechat", "/wechat/default"]) {
        const xml = messageXml({ from: `o_default_${p.length}`, fields: { MsgType: "text", Content: "d" } });
        const cb = buildCallback({ token: DEMO.WECHAT_TOKEN, encodingAesKey: DEMO.WECHAT_ENCODING_AES_KEY, appId: DEMO.WECHAT_APP_ID, xml, mode: "safe" });
        assert.equal((await r.fetch(`${p}?${cb.query}`, { method: "POST", body: cb.body })).status, 200, p);
      }
      await r.waitFor((s) => s.length === 2);
      assert.ok(r.sent.every((s) => JSON.parse(s.body).account === "default"));
      assert.equal((await r.fetch("/wechat/nobody", { method: "POST", body: "<xml/>" })).status, 404);
    } finally {
      await r.dispose();
    }
  });
});

describe("cross-account refusals", () => {
  test("another account's token, key or receive id is 401 and nothing is forwarded", async () => {
    const before = relay.sent.length;
    const xml = messageXml({ from: "o_cross", fields: { MsgType: "text", Content: "x" } });
    const shopSigned = buildCallback({ ...SHOP, xml, mode: "safe" });
    const cases = [
      ["mini", shopSigned],
      ["staff", wecomCallback(xml, { creds: { ...STAFF, token: SHOP.token } })],
      ["mini", buildCallback({ ...MINI, encodingAesKey: SHOP.encodingAesKey, xml, mode: "safe" })],
      ["mini", buildCallback({ ...MINI, appId: SHOP.appId, xml, mode: "safe" })],
      ["staff", wecomCallback(xml, { creds: { ...STAFF, appId: "wwother000000000" } })],
      // Another app of the same corp (its AgentID inside the ciphertext).
      ["staff", wecomCallback(messageXml({ from: "o_cross", fields: { MsgType: "text", Content: "x", AgentID: "1000009" } }), { agentId: "1000009" })],
    ];
    for (const [name, { query, body }] of cases) {
      const res = await relay.fetch(`/wechat/${name}?${query}`, { method: "POST", body });
      assert.equal(res.status, 401, `${name}: ${await res.text()}`);
    }
    // A plaintext POST to the WeCom app, even signed with its token.
    const plain = buildCallback({ ...STAFF, xml, mode: "plain" });
    const res = await relay.fetch(`/wechat/staff?${plain.query}`, { method: "POST", body: plain.body });
    assert.ok([400, 401].includes(res.status), `plaintext WeCom: ${res.status}`);
    await relay.settle(400);
    assert.equal(relay.sent.slice(before).filter((s) => s.url.startsWith("http://hooks.test")).length, 0);
  });
});

describe("tokens per account", () => {
  test("each account has its own token, kept by its own object, and API: stable_token for the accounts, gettoken for WeCom", async () => {
    const kv = await relay.mf.getKVNamespace("WECHAT_KV");
    const got = {};
    for (const name of ["shop", "staff", "mini", "default"]) {
      const res = await relay.fetch(`/token${name === "default" ? "" : `?account=${name}`}`, { headers: AUTH });
      assert.equal(res.status, 200, name);
      got[name] = (await res.json()).access_token;
      assert.equal(await kv.get(`credential:${name}:access_token`), null, "kept by the account's object, not in KV");
    }
    assert.equal(new Set(Object.values(got)).size, 4, JSON.stringify(got));
    assert.equal(got.shop, wechat.tokenOf(SHOP.appId));
    assert.equal(got.mini, wechat.tokenOf(MINI.appId));
    assert.equal(got.staff, wecom.tokenOf(STAFF.appId));
    const gettoken = wecom.state.calls.find((c) => c.path === "/cgi-bin/gettoken");
    assert.deepEqual(gettoken.query, { corpid: STAFF.appId, corpsecret: "staff-secret" });
    assert.equal((await relay.fetch("/token?account=nobody", { headers: AUTH })).status, 404);
  });

  test("the pass-through uses the account's API base and token; forced refreshes are per account", async () => {
    wecom.state.routes["/cgi-bin/user/get"] = (call) => Response.json({ errcode: 0, userid: call.query.userid, token: call.query.access_token, account: call.query.account ?? null });
    const res = await relay.fetch("/api/cgi-bin/user/get?account=staff&userid=zhangsan", { headers: AUTH });
    const body = await res.json();
    assert.deepEqual(body, { errcode: 0, userid: "zhangsan", token: wecom.tokenOf(STAFF.appId), account: null });
    const r1 = await (await relay.fetch("/token/refresh?account=shop", { method: "POST", headers: AUTH })).json();
    assert.equal(r1.refreshed, true);
    const r2 = await (await relay.fetch("/token/refresh?account=mini", { method: "POST", headers: AUTH })).json();
    assert.equal(r2.refreshed, true, "the shop's forced refresh does not limit the Mini Program");
  });

  test("hints name the kind: WeCom 60020, a Mini Program's 48001 through /api; no JS-SDK for Mini Programs", async () => {
    const r = await startRelay({
      bindings: { ...bindings },
      upstream: (entry) => (entry.url.startsWith("http://wecom.test/") ? Response.json({ errcode: 60020, errmsg: "not allow to access from your ip" }) : entry.url.startsWith("http://wechat.test/cgi-bin/stable_token") ? Response.json({ access_token: "T", expires_in: 7200 }) : Response.json({ errcode: 48001, errmsg: "api unauthorized" })),
    });
    try {
      const staff = await r.fetch("/token?account=staff", { headers: AUTH });
      assert.equal(staff.status, 502);
      assert.match((await staff.json()).hint, /trusted IP/);
      const mini = await (await r.fetch("/api/wxa/getwxacode?account=mini", { method: "POST", headers: AUTH, body: "{}" })).json();
      assert.equal(mini.errcode, 48001);
      assert.match(mini.hint, /Mini Program/);
      const shop = await (await r.fetch("/api/cgi-bin/menu/create?account=shop", { method: "POST", headers: AUTH, body: "{}" })).json();
      assert.match(shop.hint, /Subscription/);
      const jssdk = await r.fetch(`/jsapi/signature?account=mini&url=${encodeURIComponent("https://a.example/")}`, { headers: AUTH });
      assert.equal(jssdk.status, 404);
      assert.equal((await jssdk.json()).error, "not_available");
    } finally {
      await r.dispose();
    }
  });

  test("the cron renews every account's token, imported from a deployment that kept them in KV", async () => {
    const w = fakeWeChat();
    const c = fakeWeChat({ prefix: "WECOM" });
    const r = await startRelay({
      bindings,
      upstream: (entry) => (entry.url.startsWith("http://wechat.test/") ? w.handle(entry) : entry.url.startsWith("http://wecom.test/") ? c.handle(entry) : new Response(null, { status: 204 })),
    });
    try {
      const kv = await r.mf.getKVNamespace("WECHAT_KV");
      const now = Math.floor(Date.now() / 1000);
      // Written by the relay before its objects: one token about to expire, one good for an hour.
      for (const name of ["shop", "staff"]) {
        await kv.put(`credential:${name}:access_token`, JSON.stringify({ access_token: `OLD_${name}`, expires_at: now + 60, fetched_at: now - 7140 }));
      }
      await kv.put("credential:mini:access_token", JSON.stringify({ access_token: "KEPT_mini", expires_at: now + 3600, fetched_at: now - 3600 }));
      await (await r.mf.getWorker()).scheduled({ cron: "*/5 * * * *" });
      for (const name of ["shop", "staff"]) {
        const token = (await (await r.fetch(`/token?account=${name}`, { headers: AUTH })).json()).access_token;
        assert.ok(token && token !== `OLD_${name}`, `${name}: ${token}`);
      }
      const mini = (await (await r.fetch("/token?account=mini", { headers: AUTH })).json()).access_token;
      assert.equal(mini, "KEPT_mini", "imported, not fetched again");
      assert.equal(w.tokenCalls().filter((call) => JSON.parse(call.body).appid === MINI.appId).length, 0);
    } finally {
      await r.dispose();
    }
  });
});

describe("bad WECHAT_ACCOUNTS documents", () => {
  const cases = [
    ["{not json", "shop", /WECHAT_ACCOUNTS/],
    [JSON.stringify({ shop: { kind: "bank", app_id: "wx" } }), "shop", /shop\.kind/],
    [JSON.stringify({ shop: { kind: "official" } }), "shop", /shop\.app_id/],
    [JSON.stringify({ shop: { kind: "official", app_id: "wx", appid: "typo" } }), "shop", /shop\.appid/],
    [JSON.stringify({ Shop: { kind: "official", app_id: "wx" } }), "Shop", /a name must match/],
    [JSON.stringify({ shop: { kind: "official", app_id: "wx" } }), "shop", /WECHAT_SHOP_TOKEN/],
  ];
  for (const [doc, name, message] of cases) {
    test(`${doc.slice(0, 60)}: a 500 naming the problem, the default account unaffected`, async () => {
      const r = await startRelay({ bindings: { WECHAT_ACCOUNTS: doc } });
      try {
        const res = await r.fetch(`/wechat/${name}?signature=x&timestamp=1&nonce=n&echostr=e`);
        assert.equal(res.status, 500);
        assert.match(await res.text(), message);
        const { DEMO } = await import("./harness.mjs");
        const q = new URLSearchParams({ signature: sha1Sorted(DEMO.WECHAT_TOKEN, String(Math.floor(Date.now() / 1000)), "n"), timestamp: String(Math.floor(Date.now() / 1000)), nonce: "n", echostr: "still-ok" });
        assert.equal(await (await r.fetch(`/wechat?${q}`)).text(), "still-ok");
      } finally {
        await r.dispose();
      }
    });
  }
});
