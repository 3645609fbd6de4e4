// The operator console: asks the relay's admin routes with the key typed in (kept in this
// tab's sessionStorage only) and shows what they answer. Everything that came from WeChat or a
// receiver is put in the page as text (textContent), never parsed as HTML.
"use strict";

const KEY = "wechat-relay-admin-key";
const PAGE = 50;
const $ = (id) => document.getElementById(id);
const state = { cursor: null, accounts: [] };

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function ago(ms, now) {
  if (ms === null || ms === undefined) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function until(secs, now) {
  const s = Math.round(secs - now / 1000);
  if (s <= 0) return "expired";
  if (s < 3600) return `in ${Math.round(s / 60)} min`;
  return `in ${(s / 3600).toFixed(1)} h`;
}

const when = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "");

class Unauthorized extends Error {}

async function api(path, init = {}) {
  const key = sessionStorage.getItem(KEY);
  const res = await fetch(path, { ...init, headers: { authorization: `Bearer ${key}` }, cache: "no-store", credentials: "omit" });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) throw new Unauthorized(`${res.status}: ${body.message || "the admin key was refused"}`);
  if (!res.ok && res.status !== 404) throw new Error(`${res.status}: ${body.message || body.error || "the relay refused"}`);
  return { status: res.status, body };
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function loggedOut(message) {
  sessionStorage.removeItem(KEY);
  $("console").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("refresh").hidden = true;
  showError(message || "");
}

async function guarded(work) {
  try {
    showError("");
    await work();
  } catch (e) {
    if (e instanceof Unauthorized) loggedOut(e.message);
    else showError(e.message);
  }
}

// --- accounts ----------------------------------------------------------------------------------

function chart(hours) {
  const width = 480;
  const height = 48;
  const most = Math.max(1, ...hours.map((h) => h.callbacks + h.failures));
  const step = width / hours.length;
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img" });
  const total = hours.reduce((n, h) => n + h.callbacks, 0);
  const failed = hours.reduce((n, h) => n + h.failures, 0);
  const label = svg("title");
  label.textContent = `${total} callbacks and ${failed} failed deliveries in the last 48 hours`;
  root.append(label);
  root.append(svg("line", { class: "axis", x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5 }));
  hours.forEach((h, i) => {
    const x = i * step + 0.5;
    const c = (h.callbacks / most) * (height - 2);
    const f = (h.failures / most) * (height - 2);
    for (const [cls, value, y] of [["callbacks", c, height - c - f], ["failures", f, height - f]]) {
      if (value <= 0) continue;
      const bar = svg("rect", { class: cls, x, y, width: Math.max(1, step - 1), height: value });
      const tip = svg("title");
      tip.textContent = `${when(h.hour)}: ${h.callbacks} callbacks, ${h.failures} failed deliveries`;
      bar.append(tip);
      root.append(bar);
    }
  });
  return root;
}

function copyButton(text) {
  const button = el("button", { type: "button", text: "Copy" });
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select and copy";
    }
  });
  return button;
}

function accountCard(account, now) {
  const h = account.health;
  const rows = [
    ["Kind", account.kind],
    [account.corp_id !== undefined ? "Corp id" : "AppID", account.corp_id ?? account.app_id ?? "not set"],
    ["Message mode", account.message_mode ?? "misconfigured"],
  ];
  if (account.agent_id) rows.push(["Agent id", account.agent_id]);
  const urls = account.server_urls.map((u) => el("div", { class: "url" }, el("code", { text: u.url }), copyButton(u.url), el("span", { class: "muted", text: u.label })));
  const details = [];
  if (h) {
    const hours = h.hours ?? [];
    details.push(
      ["Last callback", ago(h.last_callback_at, now)],
      ["Last 48 h", el("span", {}, `${hours.reduce((n, x) => n + x.callbacks, 0)} callbacks, `, el("span", { class: hours.some((x) => x.failures) ? "bad" : "" , text: `${hours.reduce((n, x) => n + x.failures, 0)} failed deliveries` }))],
    );
    const token = h.credentials?.access_token;
    details.push(["Access token", token ? `expires ${until(token.expires_at, now)}, refreshed ${ago(token.fetched_at * 1000, now)}` : "none fetched yet"]);
    const ticket = h.credentials?.jsapi_ticket;
    if (ticket) details.push(["JS-SDK ticket", `expires ${until(ticket.expires_at, now)}`]);
    details.push(["Forced refreshes today", `${h.credentials?.forced_refreshes_today ?? 0} of ${h.credentials?.forced_refresh_budget ?? "?"}`]);
    if (account.kind === "platform") {
      details.push(["Verify ticket", h.verify_ticket_at ? `received ${ago(h.verify_ticket_at * 1000, now)}` : "none yet"]);
      details.push(["Merchants", String(h.merchants ?? 0)]);
    }
    details.push(["Dead letters", String(h.dead_letters)]);
    if (h.last_error) details.push(["Last error", el("span", { class: "bad", text: `${h.last_error.kind}: ${h.last_error.message} (${ago(h.last_error.at, now)})` })]);
  }
  const problems = account.problems.map((p) => el("li", { class: "problem" }, el("code", { text: p.setting }), ` ${p.problem}`));
  return el(
    "article",
    { class: "card", "data-account": account.name },
    el("h3", { text: account.name }),
    el("dl", {}, rows.map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)])),
    el("div", {}, el("div", { class: "muted", text: "Server URL" }), urls),
    h ? chart(h.hours ?? []) : el("p", { class: "bad", text: account.health_error || "no health from the account's object" }),
    el("dl", {}, details.map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)])),
    problems.length ? el("ul", {}, problems) : null,
  );
}

function setupOf(account) {
  const missing = account.setup.filter((s) => s.state === "missing" || s.state === "malformed");
  const secrets = missing.filter((s) => s.secret).map((s) => `npx wrangler secret put ${s.setting}`);
  const others = missing.filter((s) => !s.secret);
  return el(
    "div",
    { class: "setup", "data-account": account.name },
    el("h3", {}, `${account.name} `, el("span", { class: missing.length ? "bad" : "ok", text: missing.length ? `${missing.length} to set` : "complete" })),
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, el("th", { text: "Setting" }), el("th", { text: "State" }), el("th", { text: "Needed for" }))),
      el("tbody", {}, account.setup.map((s) => el("tr", {}, el("td", {}, el("code", { text: s.setting })), el("td", { class: s.state === "present" ? "ok" : s.state === "optional" ? "muted" : "bad", text: s.problem ? `${s.state}: ${s.problem}` : s.state }), el("td", { text: s.needed_for })))),
    ),
    secrets.length ? el("pre", { text: secrets.join("\n") }) : null,
    others.length ? el("p", { class: "muted", text: `Not secrets: set ${others.map((s) => s.setting).join(", ")} in wrangler.toml's [vars] or the account's WECHAT_ACCOUNTS entry.` }) : null,
  );
}

async function loadStatus() {
  const { body } = await api("/admin/status");
  state.accounts = body.accounts;
  $("generated").textContent = `as of ${when(body.now)}`;
  $("accounts").replaceChildren(...body.accounts.map((a) => accountCard(a, body.now)));
  $("setup").replaceChildren(...body.accounts.map(setupOf));
  const problems = body.problems ?? [];
  $("problems").hidden = problems.length === 0;
  $("problems").textContent = problems.map((p) => `${p.setting} ${p.problem}`).join("; ");
  const select = $("filter-account");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: "every account" }), ...body.accounts.map((a) => el("option", { value: a.name, text: a.name })));
  select.value = chosen;
}

// --- dead letters ------------------------------------------------------------------------------

function filterQuery(extra = {}) {
  const q = new URLSearchParams();
  const account = $("filter-account").value;
  const target = $("filter-target").value.trim();
  if (account) q.set("account", account);
  if (target) q.set("target", target);
  for (const [k, v] of Object.entries(extra)) if (v !== null && v !== undefined) q.set(k, v);
  return q;
}

function resultText(entry) {
  if (!entry) return ["taken by another replay", "muted"];
  if (entry.result === "delivered") return ["delivered", "ok"];
  if (entry.result === "queued") return ["queued for delivery", "ok"];
  return [`${entry.result}${entry.error ? `: ${entry.error}` : ""}`, "bad"];
}

function deadRow(letter) {
  if (letter.error && !letter.id) {
    return el("tr", {}, el("td", { colspan: 10 }, el("code", { text: letter.key }), el("span", { class: "bad", text: ` ${letter.error}` })));
  }
  const outcome = el("span", { class: "result", role: "status" });
  const replay = el("button", { type: "button", text: "Replay", disabled: letter.unreadable });
  replay.addEventListener("click", () =>
    guarded(async () => {
      replay.disabled = true;
      // This row's target only, not the event's other dead letters.
      const q = new URLSearchParams({ id: letter.id, target: letter.target });
      if (letter.account) q.set("account", letter.account);
      const { status, body } = await api(`/admin/replay?${q}`, { method: "POST" });
      const entry = status === 404 ? null : (body.replayed ?? []).find((e) => e.target === letter.target) ?? body.replayed?.[0];
      const [text, cls] = resultText(entry);
      outcome.textContent = text;
      outcome.className = `result ${cls}`;
      setTimeout(() => guarded(refreshAll), 1500);
    }),
  );
  const last = [letter.last_status ?? "no answer", letter.last_error].filter(Boolean).join(" ");
  return el(
    "tr",
    { "data-id": letter.id },
    el("td", {}, el("code", { text: letter.id })),
    el("td", { text: letter.account || "(none)" }),
    el("td", { text: letter.type || "" }),
    el("td", {}, el("code", { text: letter.target })),
    el("td", { text: letter.attempts }),
    el("td", { text: last }),
    el("td", { text: letter.first_attempt_at }),
    el("td", { text: letter.last_attempt_at }),
    el("td", { class: "content", text: letter.preview ?? "" }),
    el("td", {}, replay, outcome),
  );
}

async function loadDead(reset) {
  if (reset) state.cursor = null;
  const { body } = await api(`/admin/dead-letters?${filterQuery({ limit: PAGE, cursor: state.cursor })}`);
  const rows = body.dead_letters.map(deadRow);
  const tbody = $("dead").querySelector("tbody");
  if (reset) tbody.replaceChildren(...rows);
  else tbody.append(...rows);
  state.cursor = body.cursor;
  $("more").hidden = !body.cursor;
  $("dead-empty").hidden = tbody.children.length > 0;
}

async function replayAll() {
  const button = $("replay-all");
  button.disabled = true;
  const totals = { delivered: 0, queued: 0, failed: 0, remaining: 0 };
  try {
    let cursor = null;
    for (let call = 0; call < 100; call++) {
      const { body } = await api(`/admin/replay?${filterQuery({ cursor })}`, { method: "POST" });
      totals.delivered += body.delivered;
      totals.queued += body.queued;
      totals.failed += body.failed;
      totals.remaining = body.remaining;
      $("replay-report").textContent = `Replayed: ${totals.delivered} delivered, ${totals.queued} queued, ${totals.failed} failed…`;
      cursor = body.cursor;
      if (!cursor) break;
    }
    $("replay-report").textContent = `Replayed: ${totals.delivered} delivered, ${totals.queued} queued, ${totals.failed} failed; ${totals.remaining} dead letters left.`;
  } finally {
    button.disabled = false;
  }
  setTimeout(() => guarded(refreshAll), 1500);
}

// --- the page ----------------------------------------------------------------------------------

async function refreshAll() {
  await loadStatus();
  await loadDead(true);
}

async function open() {
  await guarded(async () => {
    await refreshAll();
    $("login").hidden = true;
    $("console").hidden = false;
    $("logout").hidden = false;
    $("refresh").hidden = false;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    $("key").value = "";
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    open();
  });
  $("logout").addEventListener("click", () => loggedOut(""));
  $("refresh").addEventListener("click", () => guarded(refreshAll));
  $("filter").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(() => loadDead(true));
  });
  $("more").addEventListener("click", () => guarded(() => loadDead(false)));
  $("replay-all").addEventListener("click", () => guarded(replayAll));
  if (sessionStorage.getItem(KEY)) open();
});
