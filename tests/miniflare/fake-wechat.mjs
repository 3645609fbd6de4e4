// A scripted stand-in for WeChat's API (api.weixin.qq.com), answering the relay's outbound
// fetches inside Miniflare. It issues numbered tokens, behaves like stable_token (same token
// until forced), and can be told to fail.
export const JSSDK_TICKET = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";

export function fakeWeChat() {
  const state = {
    issued: 0,
    current: null,
    calls: [],
    /** errcode to answer token requests with, once each, in order. */
    tokenErrors: [],
    /** Answers for pass-through paths: path -> (entry, token) => Response. */
    routes: {},
    delayMs: 0,
    down: false,
  };
  const json = (v) => new Response(JSON.stringify(v), { headers: { "content-type": "application/json; encoding=utf-8" } });
  const issue = () => {
    state.issued += 1;
    state.current = `TOKEN_${state.issued}_${"x".repeat(40)}`;
    return state.current;
  };
  async function handle(entry) {
    const url = new URL(entry.url);
    const call = { path: url.pathname, query: Object.fromEntries(url.searchParams), method: entry.method, headers: entry.headers, body: entry.body.toString() };
    state.calls.push(call);
    if (state.down) throw new Error("connection refused");
    if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));
    if (url.pathname === "/cgi-bin/stable_token" || url.pathname === "/cgi-bin/token") {
      if (state.tokenErrors.length) {
        const errcode = state.tokenErrors.shift();
        return json({ errcode, errmsg: `fake error ${errcode}` });
      }
      const force = url.pathname === "/cgi-bin/token" || JSON.parse(call.body || "{}").force_refresh === true;
      const token = force || !state.current ? issue() : state.current;
      return json({ access_token: token, expires_in: 7200 });
    }
    if (url.pathname === "/cgi-bin/ticket/getticket") {
      if (call.query.access_token !== state.current) return json({ errcode: 40001, errmsg: "invalid credential" });
      return json({ errcode: 0, errmsg: "ok", ticket: JSSDK_TICKET, expires_in: 7200 });
    }
    const route = state.routes[url.pathname];
    if (route) return route(call, state.current);
    return json({ errcode: 404, errmsg: "fake: no such api" });
  }
  return { state, handle, tokenCalls: () => state.calls.filter((c) => c.path.endsWith("token")) };
}
