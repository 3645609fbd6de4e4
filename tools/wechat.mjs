// WeChat's side of the callback protocol, written independently of the Rust core with Node's
// own crypto: the demo sender and the Miniflare tests build their callbacks with it, so the
// relay is checked against a second implementation rather than against itself.
import crypto from "node:crypto";
import fs from "node:fs";

/** hex(sha1(concat(sort(parts)))) */
export function sha1Sorted(...parts) {
  return crypto.createHash("sha1").update([...parts].map(String).sort().join("")).digest("hex");
}

/** The 32-byte AES key of a 43-character EncodingAESKey. */
export function aesKey(encodingAesKey) {
  const key = Buffer.from(encodingAesKey + "=", "base64");
  if (key.length !== 32) throw new Error("EncodingAESKey must decode to 32 bytes");
  return key;
}

/** WeChat's encryption: random(16) | len(4, BE) | message | appid, PKCS#7 over 32-byte blocks. */
export function encrypt(encodingAesKey, appId, message, random = crypto.randomBytes(16)) {
  const key = aesKey(encodingAesKey);
  const msg = Buffer.from(message);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(msg.length);
  const plain = Buffer.concat([random, len, msg, Buffer.from(appId)]);
  const pad = 32 - (plain.length % 32);
  const padded = Buffer.concat([plain, Buffer.alloc(pad, pad)]);
  const cipher = crypto.createCipheriv("aes-256-cbc", key, key.subarray(0, 16)).setAutoPadding(false);
  return Buffer.concat([cipher.update(padded), cipher.final()]).toString("base64");
}

/** The inverse of encrypt, for tools that read replies. Returns { message, appId }. */
export function decrypt(encodingAesKey, encrypted) {
  const key = aesKey(encodingAesKey);
  const decipher = crypto.createDecipheriv("aes-256-cbc", key, key.subarray(0, 16)).setAutoPadding(false);
  const plain = Buffer.concat([decipher.update(Buffer.from(encrypted, "base64")), decipher.final()]);
  const pad = plain[plain.length - 1];
  const body = plain.subarray(0, plain.length - pad);
  const len = body.readUInt32BE(16);
  return { message: body.subarray(20, 20 + len).toString(), appId: body.subarray(20 + len).toString() };
}

const cdata = (v) => `<![CDATA[${String(v).replaceAll("]]>", "]]]]><![CDATA[>")}]]>`;

/** Fields of the common message and event types, as WeChat sends them. */
export const PRESETS = {
  text: { MsgType: "text", Content: "你好，wechat-relay 😀" },
  image: { MsgType: "image", PicUrl: "http://mmbiz.qpic.cn/demo.jpg", MediaId: "demo_media_id" },
  voice: { MsgType: "voice", MediaId: "demo_media_id", Format: "amr", Recognition: "腾讯微信团队" },
  video: { MsgType: "video", MediaId: "demo_media_id", ThumbMediaId: "demo_thumb_id" },
  shortvideo: { MsgType: "shortvideo", MediaId: "demo_media_id", ThumbMediaId: "demo_thumb_id" },
  location: { MsgType: "location", Location_X: "23.134521", Location_Y: "113.358803", Scale: "20", Label: "广州市天河区" },
  link: { MsgType: "link", Title: "公众平台官网链接", Description: "公众平台官网链接", Url: "https://mp.weixin.qq.com" },
  subscribe: { MsgType: "event", Event: "subscribe", EventKey: "qrscene_123123", Ticket: "TICKET" },
  unsubscribe: { MsgType: "event", Event: "unsubscribe", EventKey: "" },
  scan: { MsgType: "event", Event: "SCAN", EventKey: "123123", Ticket: "TICKET" },
  click: { MsgType: "event", Event: "CLICK", EventKey: "V1001_TODAY_MUSIC" },
  view: { MsgType: "event", Event: "VIEW", EventKey: "https://example.com/", MenuId: "208396938" },
  location_event: { MsgType: "event", Event: "LOCATION", Latitude: "23.137466", Longitude: "113.352425", Precision: "119.385040" },
};

/**
 * A message's XML. `fields` may hold nested objects (become nested elements) and arrays
 * (become repeated <item> children).
 */
export function messageXml({ to = "gh_demo_account", from = "o_demo_user", createTime, fields }) {
  const render = (name, value) => {
    if (Array.isArray(value)) return `<${name}>${value.map((v) => render("item", v)).join("")}</${name}>`;
    if (value !== null && typeof value === "object")
      return `<${name}>${Object.entries(value).map(([k, v]) => render(k, v)).join("")}</${name}>`;
    return /^-?\d+(\.\d+)?$/.test(String(value)) && name !== "Content" ? `<${name}>${value}</${name}>` : `<${name}>${cdata(value)}</${name}>`;
  };
  const head = { ToUserName: to, FromUserName: from, CreateTime: createTime ?? Math.floor(Date.now() / 1000) };
  const all = { ...head, ...fields };
  if (/^(text|image|voice|video|shortvideo|location|link)$/.test(all.MsgType) && all.MsgId === undefined) {
    all.MsgId = String(BigInt(Date.now()) * 1000n + BigInt(crypto.randomInt(1000)));
  }
  return `<xml>${Object.entries(all).map(([k, v]) => render(k, v)).join("")}</xml>`;
}

/** The same message in WeChat's JSON format (CreateTime and MsgId as numbers). */
export function messageJson({ to = "gh_demo_account", from = "o_demo_user", createTime, fields }) {
  const all = { ToUserName: to, FromUserName: from, CreateTime: createTime ?? Math.floor(Date.now() / 1000), ...fields };
  if (/^(text|image|voice|video|shortvideo|location|link)$/.test(all.MsgType) && all.MsgId === undefined) {
    all.MsgId = Date.now() * 1000 + crypto.randomInt(1000);
  }
  return JSON.stringify(all);
}

/**
 * A complete callback as WeChat would POST it: `{ query, body }`.
 * mode: "plain" | "safe" | "compatible". `xml` may also be a JSON message (then the envelope is JSON).
 */
export function buildCallback({ token, encodingAesKey, appId, xml, mode = "plain", timestamp, nonce, openid = "o_demo_user" }) {
  const ts = String(timestamp ?? Math.floor(Date.now() / 1000));
  const n = String(nonce ?? crypto.randomInt(1e9));
  const query = new URLSearchParams({ signature: sha1Sorted(token, ts, n), timestamp: ts, nonce: n, openid });
  if (mode === "plain") return { query, body: xml };
  const enc = encrypt(encodingAesKey, appId, xml);
  query.set("encrypt_type", "aes");
  query.set("msg_signature", sha1Sorted(token, ts, n, enc));
  if (xml.trimStart().startsWith("{")) {
    const message = JSON.parse(xml);
    const body = mode === "compatible" ? JSON.stringify({ ...message, Encrypt: enc }) : JSON.stringify({ ToUserName: message.ToUserName, Encrypt: enc });
    return { query, body };
  }
  const to = /<ToUserName>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?<\/ToUserName>/.exec(xml)?.[1] ?? "";
  const body =
    mode === "compatible"
      ? xml.replace("</xml>", `<Encrypt>${cdata(enc)}</Encrypt></xml>`)
      : `<xml><ToUserName>${cdata(to)}</ToUserName><Encrypt>${cdata(enc)}</Encrypt></xml>`;
  return { query, body };
}

/**
 * A WeCom app's callback as WeCom POSTs it: `msg_signature`, `timestamp`, `nonce` (no
 * `encrypt_type`), a body with `Encrypt` and `AgentID`; always encrypted, receive id = corp id.
 */
export function buildWeComCallback({ token, encodingAesKey, corpId, xml, agentId = "", timestamp, nonce }) {
  const ts = String(timestamp ?? Math.floor(Date.now() / 1000));
  const n = String(nonce ?? crypto.randomInt(1e9));
  const enc = encrypt(encodingAesKey, corpId, xml);
  const query = new URLSearchParams({ msg_signature: sha1Sorted(token, ts, n, enc), timestamp: ts, nonce: n });
  const body = `<xml><ToUserName>${cdata(corpId)}</ToUserName><Encrypt>${cdata(enc)}</Encrypt><AgentID>${cdata(agentId)}</AgentID></xml>`;
  return { query, body };
}

/** A WeCom URL check: `echostr` is encrypted, and the expected answer is `plain`. */
export function wecomVerifyQuery({ token, encodingAesKey, corpId, plain = String(crypto.randomInt(1e9)), timestamp, nonce }) {
  const ts = String(timestamp ?? Math.floor(Date.now() / 1000));
  const n = String(nonce ?? crypto.randomInt(1e9));
  const echostr = encrypt(encodingAesKey, corpId, plain);
  return { query: new URLSearchParams({ msg_signature: sha1Sorted(token, ts, n, echostr), timestamp: ts, nonce: n, echostr }), plain };
}

/** URL verification query (GET). */
export function verifyQuery({ token, echostr = String(crypto.randomInt(1e9)), timestamp, nonce }) {
  const ts = String(timestamp ?? Math.floor(Date.now() / 1000));
  const n = String(nonce ?? crypto.randomInt(1e9));
  return new URLSearchParams({ signature: sha1Sorted(token, ts, n), timestamp: ts, nonce: n, echostr });
}

/** Reads a KEY=VALUE file (demo/demo.env) into an object. */
export function readEnvFile(path) {
  const out = {};
  for (const line of fs.readFileSync(path, "utf8").split("\n")) {
    const m = /^\s*([A-Z0-9_]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}
