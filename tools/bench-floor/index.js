// The floor under a relay callback, in plain JavaScript: GET /healthz answers at once; POST
// /claim reads the body and asks one Durable Object, which writes one SQLite row and answers,
// as the relay's claim at an account's object does; POST /log writes one JSON log line, as the
// relay does for an event it forwards nowhere. tools/bench-answer.mjs measures each.
import { DurableObject } from "cloudflare:workers";

export class Reference extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS marks (key INTEGER PRIMARY KEY, content TEXT NOT NULL)");
    this.written = 0;
  }

  async fetch(request) {
    const ask = await request.json();
    // One row written per request, a small bucket rewritten as the relay's are.
    this.sql.exec("INSERT OR REPLACE INTO marks (key, content) VALUES (?, ?)", this.written++ % 64, JSON.stringify(ask));
    return Response.json({ claimed: "new" });
  }
}

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    if (pathname === "/healthz") return new Response("ok");
    const body = await request.arrayBuffer();
    if (pathname === "/log") {
      console.log(JSON.stringify({ level: "info", msg: "event matches no route; forwarded nowhere", bytes: body.byteLength }));
      return new Response("success");
    }
    if (pathname === "/claim") {
      const stub = env.OBJECT.get(env.OBJECT.idFromName("default"));
      const answer = await stub.fetch("https://object.internal/", {
        method: "POST",
        body: JSON.stringify({ claim: { event_id: `evt_${body.byteLength}`, attempt: crypto.randomUUID() } }),
      });
      await answer.json();
      return new Response("success");
    }
    return new Response("not found", { status: 404 });
  },
};
