// End-to-end tests of the callback routes against the built worker: every mode, every bad input.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { Webhook } from "standardwebhooks";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { startRelay, DEMO, root } from "./harness.mjs";
import { buildCallback, messageJson, messageXml, verifyQuery, sha1Sorted, encrypt } from "../../tools/wechat.mjs";

const schema = JSON.parse(fs.readFileSync(path.join(root, "schema/event.schema.json"), "utf8"));
const ajv = new Ajv2020({ allErrors: true });
addFormats(ajv);
const validateEvent = ajv.compile(schema);
const assertValid = (event, what) => assert.ok(validateEvent(event), `${what}: ${ajv.errorsText(validateEvent.errors)}`);

const creds = { token: DEMO.WECHAT_TOKEN, encodingAesKey: DEMO.WECHAT_ENCODING_AES_KEY, appId: DEMO.WECHAT_APP_ID };
let relay;
before(async () => {
  relay = await startRelay();
});
after(() => relay.dispose());

const post = (query, body, headers = {}) =>
  relay.fetch(`/wechat?${query}`, { method: "POST", body, headers: { "content-type": "text/xml", ...headers } });

let seq = 0;
const text = (content = "hello", extra = {}) =>
  messageXml({ from: `o_user_${++seq}`, fields: { MsgType: "text", Content: content, MsgId: String(7_000_000_000_000_000_000n + BigInt(seq)), ...extra } });

async function deliveredFor(id) {
  await relay.waitFor((s) => s.some((r) => r.headers["webhook-id"] === id));
  return relay.sent.filter((r) => r.headers["webhook-id"] === id);
}

describe("routes", () => {
  test("GET /healthz is 200", async () => {
    const res = await relay.fetch("/healthz");
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "ok");
  });
  test("unknown path is 404", async () => {
    const res = await relay.fetch("/nope");
    assert.equal(res.status, 404);
    assert.match(await res.text(), /not found/);
  });
  test("wrong method is 405 with Allow", async () => {
    for (const method of ["PUT", "DELETE", "PATCH"]) {
      const res = await relay.fetch("/wechat", { method, body: method === "DELETE" ? undefined : "x" });
      assert.equal(res.status, 405);
      assert.equal(res.headers.get("allow"), "GET, POST");
    }
    assert.equal((await relay.fetch("/healthz", { method: "POST", body: "" })).status, 405);
  });
});

describe("URL verification (GET /wechat)", () => {
  test("valid signature echoes echostr verbatim", async () => {
    const q = verifyQuery({ token: DEMO.WECHAT_TOKEN, echostr: "4375120948345356249" });
    const res = await relay.fetch(`/wechat?${q}`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "4375120948345356249");
  });
  test("invalid signature is 401 without echo", async () => {
    const q = verifyQuery({ token: "wrong-token", echostr: "SECRET_ECHO" });
    const res = await relay.fetch(`/wechat?${q}`);
    assert.equal(res.status, 401);
    assert.doesNotMatch(await res.text(), /SECRET_ECHO/);
  });
  test("stale timestamp is 401", async () => {
    const q = verifyQuery({ token: DEMO.WECHAT_TOKEN, timestamp: Math.floor(Date.now() / 1000) - 3600 });
    const res = await relay.fetch(`/wechat?${q}`);
    assert.equal(res.status, 401);
    assert.match(await res.text(), /timestamp/);
  });
  test("missing parameters are 400", async () => {
    for (const drop of ["signature", "timestamp", "nonce", "echostr"]) {
      const q = verifyQuery({ token: DEMO.WECHAT_TOKEN });
      q.delete(drop);
      const res = await relay.fetch(`/wechat?${q}`);
      assert.equal(res.status, 400, drop);
      assert.match(await res.text(), new RegExp(drop));
    }
  });
});

describe("callbacks (POST /wechat)", () => {
  for (const mode of ["plain", "safe", "compatible"]) {
    test(`${mode} mode: 200 success, forwarded once, signed, verifiable with standardwebhooks`, async () => {
      const xml = text("你好 😀 ", { MsgId: "6054768590064713728" });
      const { query, body } = buildCallback({ ...creds, xml, mode });
      const res = await post(query, body);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "success");
      await relay.waitFor((s) => s.some((r) => r.body.includes(`o_user_${seq}`)));
      const req = relay.sent.find((r) => r.body.includes(`o_user_${seq}`));
      assert.equal(req.url, "http://hooks.test/a");
      assert.equal(req.method, "POST");
      assert.equal(req.headers["content-type"], "application/json");
      const event = new Webhook(DEMO.FORWARD_SECRET).verify(req.body.toString(), req.headers);
      assertValid(event, mode);
      assert.equal(event.id, req.headers["webhook-id"]);
      assert.equal(event.type, "text");
      assert.equal(event.event, null);
      assert.equal(event.account, "default");
      assert.equal(event.app_id, DEMO.WECHAT_APP_ID);
      assert.equal(event.from, `o_user_${seq}`);
      assert.equal(event.to, "gh_demo_account");
      assert.equal(event.data.content, "你好 😀 ");
      assert.equal(event.data.msg_id, "6054768590064713728");
      assert.ok(Number.isInteger(event.created_at));
      assert.ok(!Number.isNaN(Date.parse(event.received_at)));
    });
  }

  test("the official WXBizMsgCrypt sample ciphertext is accepted and decrypted", async () => {
    const vectors = JSON.parse(fs.readFileSync(path.join(root, "tests/vectors/official.json"), "utf8"));
    const v = vectors.decrypt[0];
    // The vector's timestamp is from 2014, outside any window: its ciphertext, signed now.
    const old = await (await import("./harness.mjs")).startRelay();
    try {
      const ts = String(Math.floor(Date.now() / 1000));
      assert.equal(sha1Sorted(v.token, v.timestamp, v.nonce, v.encrypt), v.msg_signature);
      const q = new URLSearchParams({ timestamp: ts, nonce: v.nonce, encrypt_type: "aes", msg_signature: sha1Sorted(v.token, ts, v.nonce, v.encrypt) });
      const res = await old.fetch(`/wechat?${q}`, { method: "POST", body: `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[${v.encrypt}]]></Encrypt></xml>` });
      assert.equal(res.status, 200);
      await old.waitFor((s) => s.length === 1);
      const event = JSON.parse(old.sent[0].body);
      assert.equal(event.data.content, "abcdteT");
      assert.equal(event.from, "oyORnuP8q7ou2gfYjqLzSIWZf0rs");
    } finally {
      await old.dispose();
    }
  });

  test("every sample message and event type is forwarded as its expected JSON", async () => {
    const dir = path.join(root, "tests/samples");
    const names = fs.readdirSync(dir).filter((f) => f.endsWith(".xml"));
    assert.ok(names.length >= 40);
    const now = Math.floor(Date.now() / 1000);
    for (const file of names) {
      // Each sample marked by its sender (or, for WeCom's pushes from `sys` or nobody, its corp).
      const xml = fs.readFileSync(path.join(dir, file), "utf8").replace(/oFromUser|ww_corp/, `o_sample_${file}`);
      const { query, body } = buildCallback({ ...creds, xml, mode: "safe", timestamp: now });
      const res = await post(query, body);
      assert.equal(res.status, 200, file);
    }
    await relay.waitFor((s) => names.every((f) => s.some((r) => r.body.includes(`o_sample_${f}`))));
    for (const file of names) {
      const expected = JSON.parse(fs.readFileSync(path.join(dir, file.replace(".xml", ".json")), "utf8"));
      const got = JSON.parse(relay.sent.find((r) => r.body.includes(`o_sample_${file}"`)).body);
      assertValid(got, file);
      assert.deepEqual(got.data, expected.data, file);
      assert.equal(got.type, expected.type, file);
      assert.equal(got.event, expected.event, file);
    }
  });

  for (const mode of ["plain", "safe", "compatible"]) {
    test(`JSON format, ${mode} mode: normalized like XML`, async () => {
      const json = messageJson({ from: `o_json_${mode}`, fields: { MsgType: "event", Event: "subscribe_msg_popup_event", List: { TemplateId: "T1", SubscribeStatusString: "accept", PopupScene: "2" } } });
      const { query, body } = buildCallback({ ...creds, xml: json, mode });
      const res = await post(query, body, { "content-type": "application/json" });
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "success");
      await relay.waitFor((s) => s.some((r) => r.body.includes(`o_json_${mode}`)));
      const event = JSON.parse(relay.sent.find((r) => r.body.includes(`o_json_${mode}`)).body);
      assertValid(event, mode);
      assert.equal(event.event, "subscribe_msg_popup_event");
      assert.deepEqual(event.data, { list: [{ template_id: "T1", subscribe_status_string: "accept", popup_scene: 2 }] });
    });
  }

  test("the official JSON safe-mode vector (Mini Program docs) is accepted", async () => {
    const vectors = JSON.parse(fs.readFileSync(path.join(root, "tests/vectors/official.json"), "utf8"));
    const v = vectors.decrypt.find((c) => c.name.includes("JSON"));
    const mp = await (await import("./harness.mjs")).startRelay({
      bindings: { WECHAT_TOKEN: "AAAAA", WECHAT_ENCODING_AES_KEY: "A".repeat(43), WECHAT_APP_ID: "wxba5fad812f8e6fb9" },
    });
    try {
      // The vector's ciphertext, signed now (its own timestamp is outside any window).
      const ts = String(Math.floor(Date.now() / 1000));
      assert.equal(sha1Sorted(v.token, v.timestamp, v.nonce, v.encrypt), v.msg_signature);
      const q = new URLSearchParams({ timestamp: ts, nonce: v.nonce, encrypt_type: "aes", msg_signature: sha1Sorted(v.token, ts, v.nonce, v.encrypt) });
      const res = await mp.fetch(`/wechat?${q}`, { method: "POST", body: JSON.stringify({ ToUserName: "gh_97417a04a28d", Encrypt: v.encrypt }) });
      assert.equal(res.status, 200);
      await mp.waitFor((s) => s.length === 1);
      const event = JSON.parse(mp.sent[0].body);
      assert.equal(event.event, "debug_demo");
      assert.deepEqual(event.data, { debug_str: "hello world" });
      assert.equal(event.app_id, "wxba5fad812f8e6fb9");
    } finally {
      await mp.dispose();
    }
  });

  test("safe mode decrypts with WebCrypto, never falling back to software AES", async () => {
    const big = text("微信".repeat(4000));
    const { query, body } = buildCallback({ ...creds, xml: big, mode: "safe" });
    assert.equal((await post(query, body)).status, 200);
    await relay.waitFor((s) => s.some((r) => r.body.includes(`o_user_${seq}"`)));
    assert.equal(JSON.parse(relay.sent.find((r) => r.body.includes(`o_user_${seq}"`)).body).data.content, "微信".repeat(4000));
    assert.ok(!relay.logs.join("").includes("WebCrypto AES failed"), relay.logs.join(""));
  });

  test("a WeChat retry storm is forwarded once", async () => {
    const xml = text("retry me");
    const first = buildCallback({ ...creds, xml, mode: "safe" });
    assert.equal((await post(first.query, first.body)).status, 200);
    // WeChat retries with the same content and a new nonce and signature.
    for (let i = 0; i < 3; i++) {
      const again = buildCallback({ ...creds, xml, mode: "safe" });
      assert.notEqual(again.query.get("nonce"), first.query.get("nonce"));
      assert.equal((await post(again.query, again.body)).status, 200);
    }
    await relay.waitFor((s) => s.some((r) => r.body.includes("retry me")));
    await relay.settle();
    assert.equal(relay.sent.filter((r) => r.body.includes("retry me")).length, 1);
  });

  test("distinct events of the same user and second are not merged", async () => {
    const at = Math.floor(Date.now() / 1000);
    for (const key of ["KEY_A", "KEY_B"]) {
      const xml = messageXml({ from: "o_same", createTime: at, fields: { MsgType: "event", Event: "CLICK", EventKey: key } });
      const { query, body } = buildCallback({ ...creds, xml, mode: "plain" });
      assert.equal((await post(query, body)).status, 200);
    }
    await relay.waitFor((s) => ["KEY_A", "KEY_B"].every((k) => s.some((r) => r.body.includes(k))));
  });

  describe("bad input: a clear 4xx and nothing forwarded", () => {
    const cases = {
      "bad signature": () => {
        const c = buildCallback({ ...creds, xml: text("x"), mode: "plain" });
        c.query.set("signature", "0".repeat(40));
        return [c, 401];
      },
      "bad msg_signature": () => {
        const c = buildCallback({ ...creds, xml: text("x"), mode: "safe" });
        c.query.set("msg_signature", sha1Sorted("other"));
        return [c, 401];
      },
      "stale timestamp": () => [buildCallback({ ...creds, xml: text("x"), mode: "safe", timestamp: Math.floor(Date.now() / 1000) - 301 }), 401],
      "future timestamp": () => [buildCallback({ ...creds, xml: text("x"), mode: "plain", timestamp: Math.floor(Date.now() / 1000) + 3600 }), 401],
      "wrong appid": () => resigned(encrypt(creds.encodingAesKey, "wx_not_this_account", text("x"))),
      "tampered ciphertext": () => {
        const enc = encrypt(creds.encodingAesKey, creds.appId, text("x"));
        const bytes = Buffer.from(enc, "base64");
        bytes[bytes.length - 20] ^= 0xff;
        return resigned(bytes.toString("base64"));
      },
      "bad padding": () => resigned(encrypt("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", creds.appId, text("x"))),
      "invalid base64": () => resigned("%%%not-base64%%%"),
      "truncated ciphertext": () => resigned(encrypt(creds.encodingAesKey, creds.appId, text("x")).slice(0, 44)),
      "missing signature": () => {
        const c = buildCallback({ ...creds, xml: text("x"), mode: "plain" });
        c.query.delete("signature");
        return [c, 400];
      },
      "missing timestamp": () => {
        const c = buildCallback({ ...creds, xml: text("x"), mode: "plain" });
        c.query.delete("timestamp");
        return [c, 400];
      },
      "missing msg_signature": () => {
        const c = buildCallback({ ...creds, xml: text("x"), mode: "safe" });
        c.query.delete("msg_signature");
        return [c, 400];
      },
      "empty body": () => [{ ...buildCallback({ ...creds, xml: "", mode: "plain" }), body: "" }, 400],
      "neither XML nor JSON": () => [{ ...buildCallback({ ...creds, xml: "", mode: "plain" }), body: "hello=world" }, 400],
      "JSON without the envelope fields": () => [{ ...buildCallback({ ...creds, xml: "", mode: "plain" }), body: '{"ToUserName":"x"}' }, 400],
      "JSON that is not an object": () => [{ ...buildCallback({ ...creds, xml: "", mode: "plain" }), body: "[1,2,3]" }, 400],
      "truncated XML": () => [{ ...buildCallback({ ...creds, xml: "", mode: "plain" }), body: text("x").slice(0, 60) }, 400],
      "billion laughs": () => [
        {
          ...buildCallback({ ...creds, xml: "", mode: "plain" }),
          body: '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><xml><Content>&lol2;</Content></xml>',
        },
        400,
      ],
      "external entity": () => [
        { ...buildCallback({ ...creds, xml: "", mode: "plain" }), body: '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Content>&e;</Content></xml>' },
        400,
      ],
      "missing MsgType": () => [buildCallback({ ...creds, xml: "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime></xml>", mode: "safe" }), 400],
      "encrypted body without Encrypt": () => {
        const c = buildCallback({ ...creds, xml: text("x"), mode: "safe" });
        return [{ ...c, body: "<xml><ToUserName>gh</ToUserName></xml>" }, 400];
      },
    };
    function resigned(enc) {
      const ts = String(Math.floor(Date.now() / 1000));
      const query = new URLSearchParams({ timestamp: ts, nonce: "42", encrypt_type: "aes", msg_signature: sha1Sorted(creds.token, ts, "42", enc) });
      return [{ query, body: `<xml><ToUserName>gh</ToUserName><Encrypt><![CDATA[${enc}]]></Encrypt></xml>` }, 401];
    }
    const decryptReasons = new Set();
    for (const [name, make] of Object.entries(cases)) {
      test(name, async () => {
        const before = relay.sent.length;
        const [{ query, body }, status] = make();
        const res = await post(query, body);
        assert.equal(res.status, status, name);
        const reason = await res.text();
        assert.ok(reason.trim().length > 0 && reason.length < 200, `short plain reason: ${reason}`);
        assert.match(res.headers.get("content-type"), /^text\/plain/);
        if (["wrong appid", "tampered ciphertext", "bad padding", "invalid base64", "truncated ciphertext"].includes(name)) decryptReasons.add(reason);
        await relay.settle(150);
        assert.equal(relay.sent.length, before, "nothing forwarded");
      });
    }
    test("every decryption failure gives the same answer", () => {
      assert.equal(decryptReasons.size, 1, [...decryptReasons].join(" | "));
    });
    test("body over 1 MiB is 413", async () => {
      const { query } = buildCallback({ ...creds, xml: "", mode: "plain" });
      const res = await post(query, "<xml>" + " ".repeat(1 << 20) + "</xml>");
      assert.equal(res.status, 413);
    });
    test("body over 1 MiB without Content-Length (streamed) is 413", async () => {
      const { query } = buildCallback({ ...creds, xml: "", mode: "plain" });
      const chunk = new TextEncoder().encode(" ".repeat(64 * 1024));
      let sent = 0;
      const stream = new ReadableStream({
        pull(controller) {
          if (sent++ < 20) controller.enqueue(chunk);
          else controller.close();
        },
      });
      const res = await relay.fetch(`/wechat?${query}`, { method: "POST", body: stream, duplex: "half" });
      assert.equal(res.status, 413);
      assert.match(await res.text(), /1 MiB/);
    });
  });
});
