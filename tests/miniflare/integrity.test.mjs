// Nothing lost, nothing forged, against the built worker: safe mode refusing plaintext, WeCom's
// 微信客服 push without a sender, a failing target beside a healthy one, a 180 KB event through
// an outage, and a backlog of dead letters paged and drained.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { withRelay, DEMO, root } from "./harness.mjs";
import { buildCallback, buildWeComCallback, messageXml } from "../../tools/wechat.mjs";

const creds = { token: DEMO.WECHAT_TOKEN, encodingAesKey: DEMO.WECHAT_ENCODING_AES_KEY, appId: DEMO.WECHAT_APP_ID };
const ADMIN = "admin-key-for-tests";
const admin = { authorization: `Bearer ${ADMIN}` };
let n = 0;
const text = (content = `integrity ${++n}`) => messageXml({ from: `o_int_${++n}`, fields: { MsgType: "text", Content: content, MsgId: String(9_000_000 + n) } });
const post = (relay, { query, body }, account = "") => relay.fetch(`/wechat${account}?${query}`, { method: "POST", body });
const hooks = (sent, host = "hooks.test") => sent.filter((s) => new URL(s.url).host === host);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe("message modes", () => {
  test("safe mode (the default with a key) refuses plaintext and takes only encrypted callbacks", async () => {
    await withRelay({ bindings: { WECHAT_MESSAGE_MODE: undefined } }, async (relay) => {
      const plain = buildCallback({ ...creds, xml: text("forged"), mode: "plain" });
      const refused = await post(relay, plain);
      assert.equal(refused.status, 401);
      assert.match(await refused.text(), /signature/);
      // The query of a real safe-mode callback, its encrypt_type dropped, a forged body.
      const real = buildCallback({ ...creds, xml: text("real"), mode: "safe" });
      const stripped = new URLSearchParams(real.query);
      stripped.delete("encrypt_type");
      assert.equal((await post(relay, { query: stripped, body: messageXml({ fields: { MsgType: "text", Content: "forged" } }) })).status, 401);
      assert.equal((await post(relay, real)).status, 200);
      await relay.settle(500);
      assert.equal(hooks(relay.sent).length, 1);
      assert.ok(!hooks(relay.sent)[0].body.toString().includes("forged"));
      assert.ok(relay.logs.join("").includes("safe mode"), "the log names the mode");
    });
  });

  test("plain mode refuses encrypted callbacks; a mode without its key is a 500 naming both", async () => {
    await withRelay({ bindings: { WECHAT_MESSAGE_MODE: "plain" } }, async (relay) => {
      assert.equal((await post(relay, buildCallback({ ...creds, xml: text(), mode: "safe" }))).status, 401);
      assert.equal((await post(relay, buildCallback({ ...creds, xml: text(), mode: "plain" }))).status, 200);
    });
    await withRelay({ bindings: { WECHAT_MESSAGE_MODE: "safe", WECHAT_ENCODING_AES_KEY: undefined } }, async (relay) => {
      const res = await post(relay, buildCallback({ ...creds, xml: text(), mode: "plain" }));
      assert.equal(res.status, 500);
      const body = await res.text();
      assert.match(body, /WECHAT_MESSAGE_MODE/);
      assert.match(body, /WECHAT_ENCODING_AES_KEY/);
    });
  });
});

describe("WeCom pushes", () => {
  test("kf_msg_or_event (no FromUserName, no AgentID) is forwarded with from null", async () => {
    const corp = "ww_corp_kf";
    const staff = { token: "kftoken", encodingAesKey: "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", corpId: corp };
    const bindings = {
      WECHAT_ACCOUNTS: JSON.stringify({ staff: { kind: "wecom", corp_id: corp, agent_id: "1000002" } }),
      WECHAT_STAFF_TOKEN: staff.token,
      WECHAT_STAFF_ENCODING_AES_KEY: staff.encodingAesKey,
    };
    await withRelay({ bindings }, async (relay) => {
      const sample = fs.readFileSync(path.join(root, "tests/samples/wecom_kf_msg_or_event.xml"), "utf8").replaceAll("ww_corp", corp);
      const res = await post(relay, buildWeComCallback({ ...staff, xml: sample }), "/staff");
      assert.equal(res.status, 200);
      await relay.waitFor((s) => hooks(s).length === 1);
      const e = JSON.parse(hooks(relay.sent)[0].body);
      assert.deepEqual([e.type, e.event, e.from, e.to], ["event", "kf_msg_or_event", null, corp]);
      assert.equal(e.data.open_kf_id, "wkxxxxxxx");
      // Five contact changes of one second, differing only in UserID: five events.
      const ts = Math.floor(Date.now() / 1000);
      for (const user of ["u1", "u2", "u3", "u4", "u5"]) {
        const xml = `<xml><ToUserName>${corp}</ToUserName><FromUserName>sys</FromUserName><CreateTime>${ts}</CreateTime><MsgType>event</MsgType><Event>change_contact</Event><ChangeType>update_user</ChangeType><UserID>${user}</UserID></xml>`;
        assert.equal((await post(relay, buildWeComCallback({ ...staff, xml }), "/staff")).status, 200);
      }
      await relay.waitFor((s) => hooks(s).length === 6);
      await relay.settle(500);
      const ids = hooks(relay.sent).map((s) => s.headers["webhook-id"]);
      assert.equal(new Set(ids).size, 6);
    });
  });
});

describe("delivery under failure", () => {
  test("a target that does not resolve beside a healthy one: every event to the healthy one, once", async () => {
    const upstream = (entry) => {
      if (new URL(entry.url).host === "bad.test") throw new Error("internal error");
      return new Response(null, { status: 204 });
    };
    const bindings = { FORWARD_URLS: "http://bad.test/x http://hooks.test/a", FORWARD_RETRY_DELAYS: "1s" };
    await withRelay({ queues: true, upstream, bindings }, async (relay) => {
      for (let i = 0; i < 30; i++) assert.equal((await post(relay, buildCallback({ ...creds, xml: text(), mode: "safe" }))).status, 200);
      await relay.waitFor((s) => hooks(s).length >= 30, 30_000);
      // Let the failing target's retries run for a while: nothing more reaches the healthy one.
      await sleep(5_000);
      const ids = hooks(relay.sent).map((s) => s.headers["webhook-id"]);
      assert.equal(ids.length, 30, "no duplicate");
      assert.equal(new Set(ids).size, 30);
      assert.ok(hooks(relay.sent, "bad.test").length > 30, "the failing target is retried");
      assert.ok(!relay.logs.join("").includes("Uncaught"), "no attempt escaped as an exception");
    });
  });

  test("a 180 KB event survives an outage of its receiver through the queue", async () => {
    let down = true;
    const upstream = () => new Response(null, { status: down ? 503 : 200 });
    await withRelay({ queues: true, upstream, bindings: { FORWARD_RETRY_DELAYS: "1s", ADMIN_API_KEY: ADMIN } }, async (relay) => {
      const big = "长".repeat(60_000);
      const res = await post(relay, buildCallback({ ...creds, xml: text(big), mode: "safe" }));
      assert.equal(res.status, 200);
      await relay.waitFor((s) => hooks(s).length >= 3, 30_000);
      down = false;
      const failedAttempts = hooks(relay.sent).length;
      await relay.waitFor((s) => hooks(s).length > failedAttempts, 30_000);
      await relay.settle(3_000);
      assert.equal(hooks(relay.sent).length, failedAttempts + 1, "delivered once, then no more");
      const all = hooks(relay.sent);
      const event = JSON.parse(all.at(-1).body);
      assert.equal(event.data.content, big);
      assert.equal(new Set(all.map((s) => s.headers["webhook-id"])).size, 1);
      const dead = await (await relay.fetch("/admin/dead-letters", { headers: admin })).json();
      assert.equal(dead.dead_letters.length, 0);
    });
  });
});

describe("dead letters at scale", () => {
  test("300 dead letters are paged, then drained by replay, each event once", async () => {
    let gone = true;
    const upstream = () => new Response(null, { status: gone ? 410 : 204 });
    await withRelay({ upstream, bindings: { ADMIN_API_KEY: ADMIN } }, async (relay) => {
      for (let i = 0; i < 300; i++) assert.equal((await post(relay, buildCallback({ ...creds, xml: text(), mode: "safe" }))).status, 200);
      const listed = new Set();
      for (let round = 0; round < 50; round++) {
        listed.clear();
        let cursor = null;
        let pages = 0;
        do {
          const q = new URLSearchParams({ limit: "100" });
          if (cursor) q.set("cursor", cursor);
          const res = await relay.fetch(`/admin/dead-letters?${q}`, { headers: admin });
          const page = await res.json();
          assert.equal(res.status, 200, JSON.stringify(page));
          assert.ok(page.dead_letters.length <= 100);
          for (const l of page.dead_letters) listed.add(l.id);
          cursor = page.cursor;
          pages += 1;
        } while (cursor);
        if (listed.size === 300) {
          assert.equal(pages, 3);
          break;
        }
        await sleep(200);
      }
      assert.equal(listed.size, 300);
      assert.equal((await relay.fetch("/admin/dead-letters?limit=1001", { headers: admin })).status, 400);
      gone = false;
      const before = hooks(relay.sent).length;
      let remaining = null;
      for (let call = 0; call < 100 && remaining !== 0; call++) {
        const r = await (await relay.fetch("/admin/replay", { method: "POST", headers: admin })).json();
        remaining = r.remaining;
      }
      assert.equal(remaining, 0);
      const replayed = hooks(relay.sent).slice(before).map((s) => s.headers["webhook-id"]);
      assert.equal(replayed.length, 300);
      assert.equal(new Set(replayed).size, 300);
    });
  });
});
