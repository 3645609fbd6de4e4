// A third-party platform (kind "component") against a fake component API, end to end: ticket
// pushes, the component token, the authorization link, authorization learned from the push and
// the redirect in both orders (exchanged once), authorizer tokens refreshed twice with rotated
// refresh tokens, an authorizer's message, refusals, revocation, the release check, hostile pushes.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { startRelay, root, objectRecords } from "./harness.mjs";
import { buildCallback, messageXml, encrypt, decrypt, sha1Sorted } from "../../tools/wechat.mjs";

const schema = JSON.parse(fs.readFileSync(path.join(root, "schema/event.schema.json"), "utf8"));
const ajv = new Ajv2020({ allErrors: true });
addFormats(ajv);
const validateEvent = ajv.compile(schema);

const TOKEN = "AAAAA";
const KEY = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const COMPONENT = "wx134c8103faa5a59e";
const MERCHANT = "wxba5fad812f8e6fb9";
const OTHER = "wx1111111111111111";
const API_KEY = "token-api-key";
const AUTH = { authorization: `Bearer ${API_KEY}` };
const TEST_ACCOUNT = "wx570bc396a51b8ff8";

/** WeChat's component API, as far as the relay uses it. */
function fakeComponentApi() {
  const state = { tickets: [], componentToken: null, issued: 0, codes: {}, used: new Set(), authorizers: {}, rotations: 0, calls: [], custom: [] };
  const json = (v) => Response.json(v);
  async function handle(entry) {
    const url = new URL(entry.url);
    const body = entry.body.length ? JSON.parse(entry.body.toString()) : {};
    state.calls.push({ path: url.pathname, query: Object.fromEntries(url.searchParams), body });
    const p = url.pathname;
    const needsToken = p.startsWith("/cgi-bin/component/") && !["/cgi-bin/component/api_component_token", "/cgi-bin/component/api_start_push_ticket"].includes(p);
    if (needsToken && url.searchParams.get("component_access_token") !== state.componentToken) return json({ errcode: 40001, errmsg: "invalid credential" });
    switch (p) {
      case "/cgi-bin/component/api_component_token":
        if (body.component_verify_ticket !== "ticket@@@newest") return json({ errcode: 61006, errmsg: "component ticket is invalid" });
        state.componentToken = `COMPONENT_${++state.issued}_${"c".repeat(30)}`;
        return json({ component_access_token: state.componentToken, expires_in: 7200 });
      case "/cgi-bin/component/api_start_push_ticket":
        return json({ errcode: 0, errmsg: "ok" });
      case "/cgi-bin/component/api_create_preauthcode":
        return json({ pre_auth_code: "preauthcode@@@abc", expires_in: 1800 });
      case "/cgi-bin/component/api_query_auth": {
        const code = body.authorization_code;
        if (state.used.has(code)) return json({ errcode: 61009, errmsg: "code is invalid" });
        const app = state.codes[code];
        if (!app) return json({ errcode: 61010, errmsg: "code is expired" });
        state.used.add(code);
        state.authorizers[app] = { access: `AUTH_${app}_0`, refresh: `refreshtoken@@@${app}_0` };
        return json({ authorization_info: { authorizer_appid: app, authorizer_access_token: state.authorizers[app].access, expires_in: 7200, authorizer_refresh_token: state.authorizers[app].refresh, func_info: [{ funcscope_category: { id: 1 } }] } });
      }
      case "/cgi-bin/component/api_authorizer_token": {
        if (state.refreshDelayMs) await new Promise((r) => setTimeout(r, state.refreshDelayMs));
        const a = state.authorizers[body.authorizer_appid];
        if (!a) return json({ errcode: 61003, errmsg: "not authorized" });
        if (body.authorizer_refresh_token !== a.refresh) return json({ errcode: 61023, errmsg: "refresh_token is invalid" });
        state.rotations += 1;
        a.access = `AUTH_${body.authorizer_appid}_${state.rotations}`;
        a.refresh = `refreshtoken@@@${body.authorizer_appid}_${state.rotations}`;
        return json({ authorizer_access_token: a.access, expires_in: 7200, authorizer_refresh_token: a.refresh });
      }
      case "/cgi-bin/component/api_get_authorizer_list": {
        const list = Object.entries(state.authorizers).map(([app, a]) => ({ authorizer_appid: app, refresh_token: a.refresh, auth_time: 1700000000 }));
        return json({ total_count: list.length, list });
      }
      case "/cgi-bin/message/custom/send": {
        const token = url.searchParams.get("access_token");
        state.custom.push({ token, body });
        return json(Object.values(state.authorizers).some((a) => a.access === token) ? { errcode: 0, errmsg: "ok" } : { errcode: 40001, errmsg: "invalid credential" });
      }
      default:
        if (p === "/cgi-bin/user/info") {
          return json({ openid: url.searchParams.get("openid"), token: url.searchParams.get("access_token") });
        }
        return json({ errcode: 404, errmsg: "fake: no such api" });
    }
  }
  return { state, handle, count: (p) => state.calls.filter((c) => c.path === p).length };
}

/** The platform account's settings. */
const PLATFORM = {
  WECHAT_ACCOUNTS: JSON.stringify({ platform: { kind: "component", app_id: COMPONENT } }),
  WECHAT_PLATFORM_TOKEN: TOKEN,
  WECHAT_PLATFORM_ENCODING_AES_KEY: KEY,
  WECHAT_PLATFORM_APP_SECRET: "component-secret",
  WECHAT_API_BASE: "http://wechat.test",
  TOKEN_API_KEY: API_KEY,
};

const api = fakeComponentApi();
let relay;
before(async () => {
  relay = await startRelay({
    queues: true,
    bindings: { ...PLATFORM, REPLY_URL: "http://replies.test/reply" },
    upstream: (entry) => {
      if (entry.url.startsWith("http://wechat.test/")) return api.handle(entry);
      if (entry.url === "http://replies.test/reply") return new Response(null, { status: 204 });
      return new Response(null, { status: 200 });
    },
  });
});
after(() => relay.dispose());

const now = () => Math.floor(Date.now() / 1000);

/** A push to the authorization-event URL, as WeChat sends it. */
async function push(xml, { token = TOKEN, receiveId = COMPONENT } = {}) {
  const ts = String(now());
  const nonce = String(Math.floor(Math.random() * 1e9));
  const enc = encrypt(KEY, receiveId, xml);
  const q = new URLSearchParams({ signature: sha1Sorted(token, ts, nonce), timestamp: ts, nonce, encrypt_type: "aes", msg_signature: sha1Sorted(token, ts, nonce, enc) });
  return relay.fetch(`/wechat/platform?${q}`, { method: "POST", body: `<xml><AppId><![CDATA[${COMPONENT}]]></AppId><Encrypt><![CDATA[${enc}]]></Encrypt></xml>` });
}
const infoXml = (infoType, fields = "") => `<xml><AppId><![CDATA[${COMPONENT}]]></AppId><CreateTime>${now()}</CreateTime><InfoType><![CDATA[${infoType}]]></InfoType>${fields}</xml>`;
const ticketXml = (ticket) => infoXml("component_verify_ticket", `<ComponentVerifyTicket><![CDATA[${ticket}]]></ComponentVerifyTicket>`);
const authorizedXml = (app, code) => infoXml("authorized", `<AuthorizerAppid><![CDATA[${app}]]></AuthorizerAppid><AuthorizationCode><![CDATA[${code}]]></AuthorizationCode><AuthorizationCodeExpiredTime>${now() + 600}</AuthorizationCodeExpiredTime><PreAuthCode><![CDATA[preauthcode@@@abc]]></PreAuthCode>`);

/** A message of an authorizer, to /wechat/platform/<appid>. */
function authorizerMessage(app, xml, creds = {}) {
  const cb = buildCallback({ token: TOKEN, encodingAesKey: KEY, appId: COMPONENT, xml, mode: "safe", ...creds });
  return relay.fetch(`/wechat/platform/${app}?${cb.query}`, { method: "POST", body: cb.body });
}

const forwarded = () => relay.sent.filter((s) => s.url === "http://hooks.test/a").map((s) => JSON.parse(s.body));
const eventually = async (check, ms = 10_000) => {
  const until = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe("third-party platform", () => {
  test("without a ticket the component token is a 503 that says so, and the push is asked for once", async () => {
    const res = await relay.fetch("/token?account=platform", { headers: AUTH });
    assert.equal(res.status, 503);
    const body = await res.json();
    assert.equal(body.error, "no_verify_ticket");
    assert.match(body.message, /component_verify_ticket/);
    assert.ok(res.headers.get("retry-after"));
    await relay.fetch("/token?account=platform", { headers: AUTH });
    assert.equal(api.count("/cgi-bin/component/api_start_push_ticket"), 1, "at most once an hour");
  });

  test("ticket pushes are answered success, stored (newest wins) and never forwarded; then the component token works", async () => {
    for (const t of ["ticket@@@older", "ticket@@@newest"]) {
      const res = await push(ticketXml(t));
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "text/plain; charset=utf-8");
      assert.equal(await res.text(), "success");
    }
    const kv = await objectRecords(relay, "platform");
    assert.equal((await kv.get("component:platform:ticket", "json")).ticket, "ticket@@@newest");
    const res = await relay.fetch("/token?account=platform", { headers: AUTH });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).access_token, api.state.componentToken);
    await relay.settle(300);
    assert.equal(forwarded().length, 0, "tickets are never forwarded");
  });

  test("the authorization link: a pre_auth_code and the PC and mobile pages", async () => {
    const redirect = "https://saas.example/wechat/authorized?tenant=7";
    const res = await relay.fetch(`/component/authorize-url?account=platform&redirect_uri=${encodeURIComponent(redirect)}&auth_type=1`, { headers: AUTH });
    assert.equal(res.status, 200);
    const links = await res.json();
    assert.equal(links.pre_auth_code, "preauthcode@@@abc");
    const pc = new URL(links.pc_url);
    assert.equal(pc.origin + pc.pathname, "https://mp.weixin.qq.com/cgi-bin/componentloginpage");
    assert.deepEqual(Object.fromEntries(pc.searchParams), { component_appid: COMPONENT, pre_auth_code: "preauthcode@@@abc", redirect_uri: redirect, auth_type: "1" });
    assert.ok(links.mobile_url.startsWith("https://open.weixin.qq.com/wxaopen/safe/bindcomponent?action=bindcomponent&no_scan=1&"));
    assert.ok(links.expires_at > now());
    assert.equal((await relay.fetch("/component/authorize-url?account=platform", { headers: AUTH })).status, 400);
  });

  test("an authorization learned from the push, then the redirect: exchanged once, forwarded, tokens stored", async () => {
    api.state.codes["queryauthcode@@@push-first"] = MERCHANT;
    const res = await push(authorizedXml(MERCHANT, "queryauthcode@@@push-first"));
    assert.equal(await res.text(), "success");
    await eventually(() => api.count("/cgi-bin/component/api_query_auth") === 1);
    const redirect = await relay.fetch("/component/authorizations?account=platform", { method: "POST", headers: { ...AUTH, "content-type": "application/json" }, body: JSON.stringify({ auth_code: "queryauthcode@@@push-first" }) });
    assert.equal(redirect.status, 200);
    const body = await redirect.json();
    assert.equal(body.authorizer_app_id, MERCHANT);
    assert.deepEqual(body.func_info, [{ funcscope_category: { id: 1 } }]);
    assert.equal(api.count("/cgi-bin/component/api_query_auth"), 1, "exchanged once");
    const event = await eventually(() => forwarded().find((e) => e.event === "authorized"));
    assert.ok(validateEvent(event), ajv.errorsText(validateEvent.errors));
    assert.deepEqual([event.type, event.app_id, event.from, event.to, event.account], ["component", MERCHANT, MERCHANT, COMPONENT, "platform"]);
    const kv = await objectRecords(relay, "platform");
    assert.equal((await kv.get(`authorizer:platform:${MERCHANT}`, "json")).refresh_token, `refreshtoken@@@${MERCHANT}_0`);
  });

  test("the redirect first, then the push: still one exchange", async () => {
    api.state.codes["queryauthcode@@@redirect-first"] = OTHER;
    const redirect = await relay.fetch("/component/authorizations?account=platform", { method: "POST", headers: AUTH, body: JSON.stringify({ auth_code: "queryauthcode@@@redirect-first" }) });
    assert.equal((await redirect.json()).authorizer_app_id, OTHER);
    const before = api.count("/cgi-bin/component/api_query_auth");
    await push(authorizedXml(OTHER, "queryauthcode@@@redirect-first"));
    await relay.settle(500);
    assert.equal(api.count("/cgi-bin/component/api_query_auth"), before);
    assert.equal((await relay.fetch("/component/authorizations?account=platform", { method: "POST", headers: AUTH, body: "not json" })).status, 400);
  });

  test("an authorizer's token is refreshed twice in a row, each rotated refresh token kept", async () => {
    const kv = await objectRecords(relay, "platform");
    const first = await (await relay.fetch(`/token?account=platform&authorizer=${MERCHANT}`, { headers: AUTH })).json();
    assert.equal(first.access_token, `AUTH_${MERCHANT}_0`);
    for (let n = 1; n <= 2; n++) {
      const record = await kv.get(`authorizer:platform:${MERCHANT}`, "json");
      await kv.put(`authorizer:platform:${MERCHANT}`, JSON.stringify({ ...record, expires_at: now() + 200 }));
      const res = await relay.fetch(`/token?account=platform&authorizer=${MERCHANT}`, { headers: AUTH });
      assert.equal(res.status, 200);
      const t = await res.json();
      assert.equal(t.access_token, api.state.authorizers[MERCHANT].access);
      assert.equal((await kv.get(`authorizer:platform:${MERCHANT}`, "json")).refresh_token, api.state.authorizers[MERCHANT].refresh, `rotation ${n} stored`);
    }
    const refreshed = await (await relay.fetch(`/token/refresh?account=platform&authorizer=${MERCHANT}`, { method: "POST", headers: AUTH })).json();
    assert.equal(refreshed.refreshed, true);
    const viaApi = await (await relay.fetch(`/api/cgi-bin/user/info?account=platform&authorizer=${MERCHANT}&openid=o_1`, { headers: AUTH })).json();
    assert.deepEqual(viaApi, { openid: "o_1", token: api.state.authorizers[MERCHANT].access });
    const unknown = await relay.fetch(`/token?account=platform&authorizer=wx9999999999999999`, { headers: AUTH });
    assert.equal(unknown.status, 404);
    assert.equal((await unknown.json()).error, "unknown_authorizer");
    const listed = await (await relay.fetch("/component/authorizers?account=platform", { headers: AUTH })).json();
    assert.deepEqual(listed.authorizers.map((a) => a.app_id).sort(), [MERCHANT, OTHER].sort());
    assert.ok(!JSON.stringify(listed).includes("refreshtoken"), "refresh tokens stay inside");
  });

  test("an authorizer's message is forwarded with its appid; wrong receive id and wrong token are refused", async () => {
    const ok = await authorizerMessage(MERCHANT, messageXml({ from: "o_merchant_user", fields: { MsgType: "text", Content: "hello platform" } }));
    assert.equal(ok.status, 200);
    const event = await eventually(() => forwarded().find((e) => e.from === "o_merchant_user"));
    assert.ok(validateEvent(event), ajv.errorsText(validateEvent.errors));
    assert.deepEqual([event.account, event.app_id, event.data.content], ["platform", MERCHANT, "hello platform"]);
    const xml = messageXml({ from: "o_refused", fields: { MsgType: "text", Content: "x" } });
    assert.equal((await authorizerMessage(MERCHANT, xml, { appId: MERCHANT })).status, 401, "the receive id must be the component's");
    assert.equal((await authorizerMessage(MERCHANT, xml, { token: "other" })).status, 401);
    assert.ok([400, 401].includes((await authorizerMessage(MERCHANT, xml, { mode: "plain" })).status), "plaintext refused");
    assert.equal((await authorizerMessage("not-an-appid", xml)).status, 404);
    await relay.settle(300);
    assert.ok(!forwarded().some((e) => e.from === "o_refused"));
  });

  test("the release check passes with no receiver code", async () => {
    const text = await authorizerMessage(TEST_ACCOUNT, messageXml({ from: "o_tester", fields: { MsgType: "text", Content: "TESTCOMPONENT_MSG_TYPE_TEXT" } }));
    const body = await text.text();
    const encrypted = /<Encrypt><!\[CDATA\[(.*?)\]\]><\/Encrypt>/.exec(body)[1];
    const { message, appId } = decrypt(KEY, encrypted);
    assert.equal(appId, COMPONENT);
    assert.match(message, /<Content><!\[CDATA\[TESTCOMPONENT_MSG_TYPE_TEXT_callback\]\]><\/Content>/);
    assert.match(message, /<ToUserName><!\[CDATA\[o_tester\]\]>/);
    api.state.codes["queryauthcode@@@release"] = TEST_ACCOUNT;
    const query = await authorizerMessage(TEST_ACCOUNT, messageXml({ from: "o_tester", fields: { MsgType: "text", Content: "QUERY_AUTH_CODE:queryauthcode@@@release" } }));
    assert.equal(query.status, 200);
    assert.equal(await query.text(), "");
    const sent = await eventually(() => api.state.custom.find((c) => c.body.text?.content === "queryauthcode@@@release_from_api"));
    assert.equal(sent.token, api.state.authorizers[TEST_ACCOUNT].access);
    assert.equal(sent.body.touser, "o_tester");
    await relay.settle(300);
    assert.ok(!forwarded().some((e) => e.from === "o_tester"), "the release check is not forwarded");
    assert.ok(!relay.sent.some((s) => s.url === "http://replies.test/reply" && s.body.includes("o_tester")), "nor asked of the reply receiver");
  });

  test("unauthorized: the authorizer's tokens are deleted and the event forwarded; sync recovers what WeChat still knows", async () => {
    await push(infoXml("unauthorized", `<AuthorizerAppid><![CDATA[${OTHER}]]></AuthorizerAppid>`));
    const kv = await objectRecords(relay, "platform");
    assert.equal(await kv.get(`authorizer:platform:${OTHER}`), null);
    assert.equal((await relay.fetch(`/token?account=platform&authorizer=${OTHER}`, { headers: AUTH })).status, 404);
    await eventually(() => forwarded().find((e) => e.event === "unauthorized" && e.app_id === OTHER));
    delete api.state.authorizers[OTHER];
    await kv.delete(`authorizer:platform:${MERCHANT}`);
    const synced = await (await relay.fetch("/component/authorizers/sync?account=platform", { method: "POST", headers: AUTH })).json();
    // WeChat still knows the merchant and the release check's test account; only the
    // merchant's record was lost.
    assert.deepEqual(synced, { total: 2, offset: 0, next_offset: null, created: 1, updated: 0, unchanged: 1, failed: 0 });
    assert.equal((await kv.get(`authorizer:platform:${MERCHANT}`, "json")).refresh_token, api.state.authorizers[MERCHANT].refresh);
    await push(infoXml("notify_third_fasteregister", "<appid>wx2222222222222222</appid><status>0</status><auth_code>c</auth_code><msg>OK</msg>"));
    const registered = await eventually(() => forwarded().find((e) => e.event === "notify_third_fasteregister"));
    assert.equal(registered.app_id, "wx2222222222222222");
  });

  test("pushes with another token or receive id are refused; hostile authenticated pushes are 400s", async () => {
    assert.equal((await push(ticketXml("ticket@@@forged"), { token: "other" })).status, 401);
    assert.equal((await push(ticketXml("ticket@@@forged"), { receiveId: MERCHANT })).status, 401);
    const kv = await objectRecords(relay, "platform");
    assert.equal((await kv.get("component:platform:ticket", "json")).ticket, "ticket@@@newest");
    for (const garbage of ["", "<xml>", "<xml><AppId>x</AppId></xml>", "<!DOCTYPE x [<!ENTITY a 'b'>]><xml/>", "{\"InfoType\": 1}", "<xml><AppId>a</AppId><CreateTime>x</CreateTime><InfoType>authorized</InfoType></xml>", "<xml><AppId>a</AppId><CreateTime>1</CreateTime><InfoType>component_verify_ticket</InfoType></xml>"]) {
      const res = await push(garbage);
      assert.equal(res.status, 400, garbage);
    }
    assert.equal((await relay.fetch("/healthz")).status, 200);
  });
});

describe("a platform's state in its object", () => {
  test("the code exchanged from both sides at once asks WeChat once, and both get the record", async () => {
    const THIRD = "wx2222222222222222";
    api.state.codes["queryauthcode@@@both"] = THIRD;
    const before = api.count("/cgi-bin/component/api_query_auth");
    const [pushed, redirect] = await Promise.all([
      push(authorizedXml(THIRD, "queryauthcode@@@both")),
      relay.fetch("/component/authorizations?account=platform", { method: "POST", headers: AUTH, body: JSON.stringify({ auth_code: "queryauthcode@@@both" }) }),
    ]);
    assert.equal(await pushed.text(), "success");
    assert.equal(redirect.status, 200);
    assert.equal((await redirect.json()).authorizer_app_id, THIRD);
    await relay.settle(800);
    assert.equal(api.count("/cgi-bin/component/api_query_auth") - before, 1, "one exchange");
    const records = await objectRecords(relay, "platform");
    assert.equal((await records.get(`authorizer:platform:${THIRD}`, "json")).refresh_token, `refreshtoken@@@${THIRD}_0`);
  });

  test("a revocation racing a refresh wins: the record stays deleted and the token is refused", async () => {
    const RACER = "wx4444444444444444";
    api.state.codes["queryauthcode@@@racer"] = RACER;
    await relay.fetch("/component/authorizations?account=platform", { method: "POST", headers: AUTH, body: JSON.stringify({ auth_code: "queryauthcode@@@racer" }) });
    const records = await objectRecords(relay, "platform");
    const key = `authorizer:platform:${RACER}`;
    await records.put(key, JSON.stringify({ ...(await records.get(key, "json")), expires_at: now() + 100 }));
    api.state.refreshDelayMs = 1000;
    try {
      const refresh = relay.fetch(`/token?account=platform&authorizer=${RACER}`, { headers: AUTH });
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await (await push(infoXml("unauthorized", `<AuthorizerAppid><![CDATA[${RACER}]]></AuthorizerAppid>`))).text(), "success");
      const answer = await refresh;
      assert.equal(answer.status, 404, "the refresh that started before the revocation does not bring it back");
      assert.equal((await answer.json()).error, "unknown_authorizer");
    } finally {
      api.state.refreshDelayMs = 0;
    }
    assert.equal(await records.get(key), null);
    assert.equal((await relay.fetch(`/token?account=platform&authorizer=${RACER}`, { headers: AUTH })).status, 404);
  });

  test("a deployment that kept its merchants in KV keeps their refresh tokens after the upgrade", async () => {
    const old = fakeComponentApi();
    const LEGACY = "wx3333333333333333";
    old.state.authorizers[LEGACY] = { access: "AUTH_legacy", refresh: "refreshtoken@@@legacy" };
    const r = await startRelay({
      bindings: PLATFORM,
      upstream: (entry) => (entry.url.startsWith("http://wechat.test/") ? old.handle(entry) : new Response(null, { status: 200 })),
    });
    try {
      // What the relay before its objects wrote: the verify ticket and a merchant whose token
      // has expired.
      const kv = await r.mf.getKVNamespace("WECHAT_KV");
      await kv.put("component:platform:ticket", JSON.stringify({ ticket: "ticket@@@newest", create_time: now(), received_at: now() }));
      await kv.put(`authorizer:platform:${LEGACY}`, JSON.stringify({ app_id: LEGACY, refresh_token: "refreshtoken@@@legacy", access_token: "AUTH_old", expires_at: now() - 10, fetched_at: now() - 7210, func_info: [], authorized_at: now() - 86400 }));
      const res = await r.fetch(`/token?account=platform&authorizer=${LEGACY}`, { headers: AUTH });
      assert.equal(res.status, 200, await res.clone().text());
      const token = await res.json();
      assert.equal(token.access_token, old.state.authorizers[LEGACY].access, "refreshed with the imported refresh token");
      const records = await objectRecords(r, "platform");
      assert.equal((await records.get(`authorizer:platform:${LEGACY}`, "json")).refresh_token, old.state.authorizers[LEGACY].refresh, "the rotated one stored in the object");
      // Revoked in the object: KV's older copy is never imported again.
      await records.delete(`authorizer:platform:${LEGACY}`);
      const gone = await r.fetch(`/token?account=platform&authorizer=${LEGACY}`, { headers: AUTH });
      assert.equal(gone.status, 404);
      assert.equal((await gone.json()).error, "unknown_authorizer");
      assert.ok(await kv.get(`authorizer:platform:${LEGACY}`), "KV still has the old copy");
    } finally {
      await r.dispose();
    }
  });
});
