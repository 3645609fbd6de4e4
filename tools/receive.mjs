#!/usr/bin/env node
// A local webhook receiver: verifies each delivery with the official `standardwebhooks`
// library and prints the event as it arrives.
//
//   node tools/receive.mjs                    # port 8788, secret from demo/demo.env
//   node tools/receive.mjs --port 9000 --secret whsec_...
//   node tools/receive.mjs --reply "收到"      # also a passive-reply receiver at /reply (REPLY_URL):
//                                             # every text message gets this text back
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { Webhook } from "standardwebhooks";
import { readEnvFile } from "./wechat.mjs";

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    port: { type: "string", default: "8788" },
    host: { type: "string", default: "127.0.0.1" },
    secret: { type: "string" },
    "env-file": { type: "string", default: path.join(root, "demo/demo.env") },
    reply: { type: "string" },
  },
});
const env = fs.existsSync(values["env-file"]) ? readEnvFile(values["env-file"]) : {};
const secret = values.secret ?? env.FORWARD_SECRET;
const webhook = secret ? new Webhook(secret) : null;

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    let verdict = "unsigned (no secret configured)";
    if (webhook) {
      try {
        webhook.verify(body, req.headers);
        verdict = "signature OK (standardwebhooks)";
      } catch (e) {
        console.log(`✗ ${req.method} ${req.url}: signature rejected: ${e.message}`);
        res.writeHead(401).end("bad signature\n");
        return;
      }
    }
    let pretty = body;
    try {
      pretty = JSON.stringify(JSON.parse(body), null, 2);
    } catch {}
    if (req.url !== "/reply") {
      console.log(`✓ ${req.method} ${req.url} webhook-id=${req.headers["webhook-id"]} ${verdict}\n${pretty}\n`);
    } else {
      console.log(`? ${req.method} /reply webhook-id=${req.headers["webhook-id"]} ${verdict}: asked for a passive reply`);
    }
    if (req.url === "/reply" && values.reply !== undefined) {
      let event = {};
      try {
        event = JSON.parse(body);
      } catch {}
      if (event.type === "text") {
        const reply = { type: "text", content: values.reply };
        console.log(`↩ passive reply ${JSON.stringify(reply)}\n`);
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(reply));
        return;
      }
    }
    res.writeHead(204).end();
  });
});
server.listen(Number(values.port), values.host, () => {
  console.log(`listening on http://${values.host}:${values.port}/ (${webhook ? "verifying signatures" : "no secret: not verifying"})`);
});
