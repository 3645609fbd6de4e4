#!/usr/bin/env node
// Sends a correctly signed (optionally encrypted) WeChat callback to a running relay.
//
//   node tools/send.mjs                         # a text message, safe mode, demo settings
//   node tools/send.mjs --type click --mode plain
//   node tools/send.mjs --type event --field Event=TEMPLATESENDJOBFINISH --field MsgID=200163836 --field Status=success
//   node tools/send.mjs --xml tests/samples/event_masssendjobfinish.xml
//   node tools/send.mjs --format json          # WeChat's JSON format instead of XML
//   node tools/send.mjs --verify                # the GET URL check WeChat makes
//   node tools/send.mjs --account staff         # to /wechat/staff, as its kind sends (here WeCom)
//   node tools/send.mjs --account mini --format json
//
// Settings default to demo/demo.env (the account's WECHAT_<NAME>_* and WECHAT_ACCOUNTS entry
// with --account); override with --env-file or --token/--aes-key/--app-id.
import { parseArgs } from "node:util";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PRESETS, buildCallback, buildWeComCallback, decrypt, messageJson, messageXml, readEnvFile, verifyQuery, wecomVerifyQuery } from "./wechat.mjs";

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    url: { type: "string" },
    account: { type: "string" },
    "env-file": { type: "string", default: path.join(root, "demo/demo.env") },
    token: { type: "string" },
    "aes-key": { type: "string" },
    "app-id": { type: "string" },
    mode: { type: "string", default: "safe" },
    format: { type: "string", default: "xml" },
    type: { type: "string", default: "text" },
    field: { type: "string", multiple: true, default: [] },
    xml: { type: "string" },
    from: { type: "string", default: "o_demo_user" },
    verify: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(`usage: node tools/send.mjs [--url URL] [--mode safe|compatible|plain] [--type ${Object.keys(PRESETS).join("|")}|event]
       [--format xml|json] [--field Name=value ...] [--xml FILE] [--from OPENID] [--verify] [--account NAME]
       [--env-file FILE] [--token T --aes-key K --app-id A]`);
  process.exit(0);
}
const env = fs.existsSync(values["env-file"]) ? readEnvFile(values["env-file"]) : {};
const account = values.account && values.account !== "default" ? values.account : null;
const entry = account ? JSON.parse(env.WECHAT_ACCOUNTS ?? "{}")[account] ?? {} : { kind: "official" };
const prefix = account ? `WECHAT_${account.toUpperCase()}_` : "WECHAT_";
const token = values.token ?? env[`${prefix}TOKEN`];
const encodingAesKey = values["aes-key"] ?? env[`${prefix}ENCODING_AES_KEY`];
const appId = values["app-id"] ?? (account ? entry.app_id ?? entry.corp_id : env.WECHAT_APP_ID);
const url = values.url ?? `http://127.0.0.1:8787/wechat${account ? `/${account}` : ""}`;
values.url = url;
if (!token) throw new Error(`no token: pass --token or set ${prefix}TOKEN in --env-file`);

if (values.verify && entry.kind === "wecom") {
  const { query, plain } = wecomVerifyQuery({ token, encodingAesKey, corpId: appId });
  const res = await fetch(`${url}?${query}`);
  const text = await res.text();
  console.log(`GET ${res.status} ${JSON.stringify(text)} ${text === plain ? "(decrypted echostr matches)" : "(does NOT match)"}`);
  process.exit(res.ok && text === plain ? 0 : 1);
}
if (values.verify) {
  const echostr = "echo-" + Date.now();
  const res = await fetch(`${values.url}?${verifyQuery({ token, echostr })}`);
  const text = await res.text();
  console.log(`GET ${res.status} ${JSON.stringify(text)} ${text === echostr ? "(echo matches)" : "(echo does NOT match)"}`);
  process.exit(res.ok && text === echostr ? 0 : 1);
}

let xml;
if (values.xml) {
  xml = fs.readFileSync(values.xml, "utf8");
} else {
  const fields = { ...(PRESETS[values.type] ?? { MsgType: values.type }) };
  for (const f of values.field) {
    const i = f.indexOf("=");
    if (i < 1) throw new Error(`--field wants Name=value, got ${f}`);
    fields[f.slice(0, i)] = f.slice(i + 1);
  }
  xml = values.format === "json" ? messageJson({ from: values.from, fields }) : messageXml({ from: values.from, fields });
}
const { query, body } =
  entry.kind === "wecom"
    ? buildWeComCallback({ token, encodingAesKey, corpId: appId, xml, agentId: entry.agent_id ?? "" })
    : buildCallback({ token, encodingAesKey, appId, xml, mode: values.mode, openid: values.from });
const contentType = body.trimStart().startsWith("{") ? "application/json" : "text/xml";
const res = await fetch(`${values.url}?${query}`, { method: "POST", headers: { "content-type": contentType }, body });
const answer = await res.text();
console.log(`POST (${values.mode}) ${res.status} ${JSON.stringify(answer)}`);
// A passive reply in safe mode: open it as WeChat would.
const sealed = /<Encrypt><!\[CDATA\[(.*?)\]\]><\/Encrypt>/.exec(answer)?.[1] ?? (answer.startsWith("{") ? JSON.parse(answer).Encrypt : undefined);
if (sealed && encodingAesKey) console.log(`reply (decrypted): ${decrypt(encodingAesKey, sealed).message}`);
process.exit(res.ok ? 0 : 1);
