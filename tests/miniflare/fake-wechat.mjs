// A scripted stand-in for WeChat's API (api.weixin.qq.com) and WeCom's (qyapi.weixin.qq.com),
// answering the relay's outbound fetches inside Miniflare. It issues numbered tokens per app,
// behaves like stable_token (same token until forced) and gettoken (same token while valid), and
// can be told to fail.
export const JSSDK_TICKET = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";

/** `prefix` tells the tokens of two fakes apart (TOKEN_1_… and WECOM_1_…). */
export function fakeWeChat({ prefix = "TOKEN" } = {}) {
  const state = {
    issued: 0,
    /** The most recently issued token, of any app. */
    current: null,
    /** The valid token of each AppID or corp id. */
    byApp: {},
    calls: [],
    /** errcode to answer token requests with, once each, in order. */
    tokenErrors: [],
    /** Answers for pass-through paths: path -> (entry, token) => Response. */
    routes: {},
    delayMs: 0,
    down: false,
  };
  const json = (v) => new Response(JSON.stringify(v), { headers: { "content-type": "application/json; encoding=utf-8" } });
  const issue = (app) => {
    state.issued += 1;
    state.current = `${prefix}_${state.issued}_${"x".repeat(40)}`;
    state.byApp[app] = state.current;
    return state.current;
  };
  const valid = (token) => Object.values(state.byApp).includes(token);
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
      const body = JSON.parse(call.body || "{}");
      const app = call.query.appid ?? body.appid ?? "";
      const force = url.pathname === "/cgi-bin/token" || body.force_refresh === true;
      const token = force || !state.byApp[app] ? issue(app) : state.byApp[app];
      return json({ access_token: token, expires_in: 7200 });
    }
    if (url.pathname === "/cgi-bin/gettoken") {
      if (state.tokenErrors.length) {
        const errcode = state.tokenErrors.shift();
        return json({ errcode, errmsg: `fake error ${errcode}` });
      }
      const corp = call.query.corpid ?? "";
      return json({ errcode: 0, errmsg: "ok", access_token: state.byApp[corp] ?? issue(corp), expires_in: 7200 });
    }
    if (url.pathname === "/cgi-bin/ticket/getticket" || url.pathname === "/cgi-bin/get_jsapi_ticket") {
      if (!valid(call.query.access_token)) return json({ errcode: 40001, errmsg: "invalid credential" });
      return json({ errcode: 0, errmsg: "ok", ticket: JSSDK_TICKET, expires_in: 7200 });
    }
    const route = state.routes[url.pathname];
    if (route) return route(call, state.current);
    return json({ errcode: 404, errmsg: "fake: no such api" });
  }
  return { state, handle, tokenCalls: () => state.calls.filter((c) => c.path.endsWith("token")), tokenOf: (app) => state.byApp[app] };
}
