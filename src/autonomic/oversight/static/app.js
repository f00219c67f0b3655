// autonomic dashboard: a single page app over the REST API (/api/v1), no build step.
// Views are re-rendered from the API on every hash change and on every audit event (SSE).
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "autonomic.token";
const $ = (sel) => document.querySelector(sel);

// --- token -------------------------------------------------------------------------------------

function takeTokenFromUrl() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (token) {
    localStorage.setItem(TOKEN_KEY, token);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
}

function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

function askForToken(message) {
  $("#token-box").hidden = false;
  if (message) showError(message);
}

$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = $("#token-input").value.trim();
  if (!value) return;
  localStorage.setItem(TOKEN_KEY, value);
  $("#token-input").value = "";
  $("#token-box").hidden = true;
  showError("");
  connectEvents();
  render(true);
});

// --- helpers -----------------------------------------------------------------------------------

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// the newest audit event heard (SSE). Reads name it (?seen=), so a page redrawn for an event is
// never the API's short replay of a read made before that event (the cache keys on the query)
let seenSeq = 0;

async function api(path, options = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${token()}` };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const method = options.method || "GET";
  const url = method === "GET" && seenSeq ? `${path}${path.includes("?") ? "&" : "?"}seen=${seenSeq}` : path;
  const response = await fetch(API + url, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  let payload = null;
  const text = await response.text();
  try { payload = text ? JSON.parse(text) : null; } catch (_) { payload = text; }
  if (!response.ok) {
    // a 422's message says every problem in words ("reason: must not be empty"); detail is its list
    const detail = payload && typeof payload === "object" ? (payload.message || payload.detail || payload.error || text) : text;
    throw new HttpError(response.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return payload;
}

// h("div", {class: "x", onclick: fn}, child, "text", [more]) -> element; text is never parsed as HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "testid") el.dataset.testid = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  appendAll(el, children);
  return el;
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) el.setAttribute(key, value);
  }
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

// a moment on the page: its time, with its day when not today (an incident escalated yesterday);
// the header names the zone (zoneName), the browser's, where notifications say UTC
function clock(ts) {
  return when(ts);
}

// a chart's axis: the time of day only
function timeOfDay(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
}

// "times in UTC+05:30 (Asia/Kolkata)": the zone every time on the page is shown in
function zoneName() {
  const offset = -new Date().getTimezoneOffset();
  const pad = (n) => String(n).padStart(2, "0");
  const hhmm = `${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  const utc = offset === 0 ? "UTC" : `UTC${offset < 0 ? "-" : "+"}${hhmm}`;
  let name = "";
  try { name = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (_) { /* no Intl */ }
  return `times in ${utc}${name && name !== "UTC" && name !== "Etc/UTC" ? ` (${name})` : ""}`;
}

function when(ts) {
  if (!ts) return "-";
  const d = new Date(ts * 1000);
  const time = d.toLocaleTimeString([], { hour12: false });
  if (d.toDateString() === new Date().toDateString()) return time;
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

function ago(ts) {
  if (!ts) return "";
  const sec = Math.max(0, Date.now() / 1000 - ts);
  if (sec < 60) return `${Math.round(sec)} s ago`;
  if (sec < 3600) return `${Math.round(sec / 60)} min ago`;
  if (sec < 86400) return `${(sec / 3600).toFixed(1)} h ago`;
  return `${(sec / 86400).toFixed(1)} d ago`;
}

function duration(sec) {
  if (sec === null || sec === undefined) return "∞";
  if (sec < 120) return `${Math.round(sec)} s`;
  if (sec < 7200) return `${Math.round(sec / 60)} min`;
  if (sec < 172800) return `${(sec / 3600).toFixed(1)} h`;
  return `${(sec / 86400).toFixed(1)} d`;
}

function num(v) {
  if (v === null || v === undefined) return "-";
  if (typeof v !== "number") return String(v);
  if (v === 0 || Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
  const a = Math.abs(v);
  if (a >= 1e6) return v.toExponential(2);
  if (a >= 100) return v.toFixed(0);
  if (a >= 1) return v.toFixed(2).replace(/\.?0+$/, "");
  return v.toPrecision(2);
}

// n and noun, plural unless n is 1: "1 value", "3 values", "0 events" (plural when it is not
// noun + "s"); the rule of autonomic.printable.counted
function counted(n, noun, plural) {
  return `${n} ${n === 1 ? noun : plural || noun + "s"}`;
}

function tag(text, cls) {
  return h("span", { class: `tag ${cls || String(text).toLowerCase()}` }, String(text).replace(/_/g, " "));
}

function short(id) {
  return String(id || "").slice(0, 8);
}

function params(p) {
  const entries = Object.entries(p || {});
  const show = (v) => (v && typeof v === "object" ? `(${params(v)})` : typeof v === "number" ? num(v) : v);
  return entries.length ? entries.map(([k, v]) => `${k}=${show(v)}`).join(" ") : "";
}

function actionText(a) {
  if (!a) return "no action (escalate to a person)";
  return `${a.type} ${params(a.params)} on ${a.target}`.replace(/\s+/g, " ");
}

function showError(message) {
  const el = $("#error");
  el.textContent = message || "";
  el.hidden = !message;
}

function section(title, ...children) {
  return [h("h2", {}, title), ...children];
}

// --- routing -----------------------------------------------------------------------------------

const routes = [
  [/^#?\/?$/, "overview", () => renderOverview()],
  [/^#\/incidents\/([0-9a-zA-Z]+)$/, "overview", (m) => renderIncident(m[1])],
  [/^#\/approvals$/, "approvals", () => renderApprovals()],
  [/^#\/audit$/, "audit", (m, opened) => renderAudit(opened)],
];

let renderSeq = 0;
// someone is typing in the page (a reason, a comment): do not redraw under their hands
function typing() {
  const el = document.activeElement;
  return Boolean(el && el.matches("#view input, #view textarea"));
}

// what a person typed into a field (a pause reason, an approval comment), by field: a redraw
// builds the field again with it, so a live update never loses words typed a moment before
const drafts = new Map();
function draft(key, attrs) {
  const el = h("input", { type: "text", ...attrs, oninput: (ev) => drafts.set(key, ev.target.value) });
  el.value = drafts.get(key) || "";
  return el;
}

// opened: the person navigated here (or loaded the page); false for a redraw after an event
async function render(opened = false) {
  const hash = window.location.hash || "#/";
  const seq = ++renderSeq;
  let route = routes.find(([re]) => re.test(hash));
  if (!route) route = routes[0];
  const [re, nav, fn] = route;
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
  if (!token()) {
    askForToken("");
    $("#view").replaceChildren(h("p", { class: "empty" }, "No API token yet: paste one above."));
    return;
  }
  try {
    const content = await fn(hash.match(re), opened);
    if (seq !== renderSeq) return; // a newer render started meanwhile
    // the person began typing while this render waited for the API: draw later, not under them
    if (!opened && typing()) { scheduleRender(); return; }
    $("#view").replaceChildren(...[content].flat(Infinity).filter(Boolean));
    showError("");
  } catch (err) {
    if (seq !== renderSeq) return;
    if (err instanceof HttpError && err.status === 401) {
      localStorage.removeItem(TOKEN_KEY);
      askForToken("The API token was refused (401). Paste a valid one.");
    } else {
      showError(`Could not load this page: ${err.message}`);
    }
  }
  refreshChrome();
}

// header badges (approval count, global pause banner), cheap enough to refresh on every render
async function refreshChrome() {
  try {
    const ov = await api("/overview");
    lastOverview = ov;
    $("#approval-count").textContent = ov.awaiting_approval ? String(ov.awaiting_approval) : "";
    const banner = $("#paused-banner");
    const p = ov.paused_global;
    banner.hidden = !p;
    banner.textContent = p ? `ALL AUTOMATION PAUSED by ${p.actor}: ${p.reason}` : "";
  } catch (_) { /* the view shows the error */ }
}

let lastOverview = null;
let pending = null;
function scheduleRender() {
  if (pending) return;
  pending = setTimeout(() => {
    pending = null;
    if (typing()) { scheduleRender(); return; }
    render();
  }, 250);
}

window.addEventListener("hashchange", () => render(true));

// --- live updates ------------------------------------------------------------------------------

let source = null;
const RETRY_MS = 3000;
function connectEvents() {
  if (source) source.close();
  source = null;
  if (!token()) return;
  const es = new EventSource(`${API}/events?token=${encodeURIComponent(token())}`);
  source = es;
  const live = $("#live");
  es.onopen = () => { live.className = "live on"; live.textContent = "live"; };
  es.onerror = () => {
    live.className = "live off";
    if (es.readyState !== EventSource.CLOSED) { live.textContent = "reconnecting"; return; }
    // refused, not cut off (a proxy's 502 or 503 while the engine restarts, a 401): an EventSource
    // then gives up for good, so try again; the redraw first says what the API answers (a token
    // refused asks for another, and nothing reconnects without one)
    live.textContent = "offline: retrying";
    setTimeout(async () => {
      if (source !== es) return; // connected again meanwhile (a new token)
      await render();
      if (source === es) connectEvents();
    }, RETRY_MS);
  };
  es.addEventListener("audit", (ev) => {
    live.className = "live on";
    live.textContent = "live";
    try {
      const e = JSON.parse(ev.data);
      live.title = `last event #${e.seq} ${e.kind}`;
      if (typeof e.seq === "number" && e.seq > seenSeq) seenSeq = e.seq;
    } catch (_) { /* ignore a malformed event */ }
    scheduleRender();
  });
}

// one mutation: disable the button, call, re-render; errors go to the banner. draftKey: the
// field whose words the call sent, emptied once they are recorded (kept when the call failed)
async function act(button, path, body, draftKey = null) {
  button.disabled = true;
  let answer = null;
  try {
    answer = await api(path, { method: "POST", body });
    showError("");
    if (draftKey) drafts.delete(draftKey);
  } catch (err) {
    showError(err.status === 403 ? `Not allowed (403): ${err.message}` : `Failed: ${err.message}`);
    button.disabled = false;
    return;
  }
  await render();
  // the store could not be written: the engine's pause file holds the pause (it shows once the store answers)
  if (answer && answer.file) showError(`Paused by the pause file ${answer.file} on the engine's host: the store could not be written`);
}

// --- overview ----------------------------------------------------------------------------------

async function renderOverview() {
  let ov;
  try {
    ov = await api("/overview");
  } catch (err) {
    // the store does not answer: what the engine does cannot be shown, but the kill switch is
    // drawn, its state unknown (an API inside the engine pauses by its pause file; storeDown says)
    if (err instanceof HttpError && err.status === 503) return storeDown();
    throw err;
  }
  lastOverview = ov;
  return [
    killSwitch(ov.paused_global),
    leadership(ov.leadership),
    ov.awaiting_approval ? h("p", { class: "big" },
      h("a", { href: "#/approvals", testid: "awaiting-link" }, `${ov.awaiting_approval} awaiting approval →`)) : null,
    unsent(ov.notifications_pending),
    section("Services", h("div", { class: "grid", testid: "services" }, ov.services.map(serviceCard))),
    section(openHeading(ov), incidentTable(ov.open_incidents, "open-incidents")),
    h("div", { class: "cols" },
      h("div", {}, section("Circuit breakers", breakers(ov.breakers))),
      h("div", {}, section("Remaining budgets", budgets(ov.budgets)))),
    ov.goals && ov.goals.length ? section("Goals (error budgets)", goalsTable(ov.goals)) : null,
  ];
}

// each goal's error budget left and its burn now, as the engine last saved them (GET /goals)
function goalsTable(goals) {
  return h("table", { testid: "goals" },
    h("tr", {}, ["service", "goal", "objective", "budget left", "burn now", "runs out in", "as of"].map((t) => h("th", {}, t))),
    goals.map((g) => {
      const left = g.budget_remaining;
      const burning = g.current_burn !== null && g.current_burn >= 1;
      return h("tr", { testid: `goal-${g.service}-${g.goal}` },
        h("td", {}, h("b", {}, g.service)),
        h("td", {}, g.goal),
        h("td", {}, g.objective),
        h("td", { class: "num", testid: `goal-left-${g.service}-${g.goal}` },
          left === null ? "no samples" : left <= 0 ? tag("spent", "open-breaker") : `${(100 * left).toFixed(1)}%`),
        h("td", { class: "num", testid: `goal-burn-${g.service}-${g.goal}` }, g.current_burn === null ? "-"
          : burning ? tag(`${g.current_burn.toFixed(2)}x`, "open-breaker") : `${g.current_burn.toFixed(2)}x`),
        h("td", {}, g.exhausted_in_s === null ? "-" : g.exhausted_in_s === 0 ? "now" : duration(g.exhausted_in_s)),
        h("td", { class: "dim" }, g.note ? g.note : g.saved ? ago(g.as_of) : "not saved yet"));
    }));
}

// leader election: who leads, since when, whether it renews, and this replica's part
function leadership(l) {
  if (!l) return null;
  const stale = l.leader && l.renewed_s_ago > l.lease_s;
  const parts = [l.leader ? `Leader: ${l.leader} (epoch ${l.epoch}), since ${when(l.since)}` : "No replica leads"];
  if (stale) parts.push(`NOT RENEWED for ${Math.round(l.renewed_s_ago)} s: down, frozen or cut off from the store`);
  if (l.this_replica) {
    parts.push(`this replica (${l.this_replica}) is ${l.role === "leader" ? "the leader" : "a standby"}`);
  }
  if (l.config_differs) parts.push("it runs another config than the leader's");
  return h("p", { class: stale || l.config_differs ? "leader-warn" : "dim", testid: "leadership" }, parts.join(" · "));
}

// notifications a notifier gave up on, kept in the outbox for it (overview's notifications_pending);
// nothing while every notifier delivers (one on its way for the first time is not news)
function unsent(p) {
  if (!p || !p.count || !Object.keys(p.failing).length) return null;
  const now = Date.now() / 1000;
  const failing = Object.entries(p.failing).map(([name, n]) => `${name} (${n})`).join(", ");
  const next = p.next_retry_at === null ? ""
    : p.next_retry_at > now ? `; next retry in ${duration(p.next_retry_at - now)}` : `; next retry due ${ago(p.next_retry_at)}`;
  return h("p", { class: "leader-warn", testid: "notifications-pending" },
    `${p.count} notification${p.count === 1 ? "" : "s"} not yet delivered, the oldest made ${ago(p.oldest_at)}; ` +
    `failing: ${failing}${next}`);
}

function storeDown() {
  lastOverview = null;
  return [
    killSwitch(null, true),
    h("p", { class: "leader-warn", testid: "store-down" },
      "The store does not answer (503): services, incidents and approvals cannot be shown, nor whether " +
      "automation is paused. The kill switch is still here: an API serving inside the engine pauses by " +
      "the engine's pause file, and says so; one beside it, or a replica's, cannot, and says nothing " +
      "was paused."),
  ];
}

// unknown: the store does not answer, so whether automation is paused cannot be read
function killSwitch(paused, unknown = false) {
  if (paused) {
    return h("div", { class: "control paused", testid: "control" },
      h("div", { class: "state", testid: "pause-state" },
        `PAUSED by ${paused.actor}: ${paused.reason}`,
        paused.file ? h("div", { class: "dim" }, `by the pause file ${paused.file} on the engine's host`) : null,
        h("div", { class: "dim" }, `since ${when(paused.ts)} (${ago(paused.ts)}); nothing will act until resumed`)),
      h("button", { class: "resume", testid: "resume",
        onclick: (ev) => act(ev.currentTarget, "/resume", { service: null }) }, "Resume automation"));
  }
  const reason = draft("kill-reason", { testid: "kill-reason", placeholder: "reason (optional)",
    "aria-label": "reason for pausing" });
  return h("div", { class: "control active", testid: "control" },
    h("div", { class: "state", testid: "pause-state" },
      unknown ? "Automation state unknown: the store does not answer" : "Automation ACTIVE"),
    reason,
    h("button", { class: "kill", testid: "kill-switch", title: "pause all automation now",
      onclick: (ev) => act(ev.currentTarget, "/pause",
        { reason: reason.value.trim() || "kill switch pressed in the dashboard", service: null }, "kill-reason") },
    "■ KILL SWITCH"));
}

function serviceCard(svc) {
  const globalPause = Boolean(lastOverview && lastOverview.paused_global);
  const pauseBtn = globalPause ? null : svc.paused
    ? h("button", { class: "small go", testid: `resume-${svc.name}`,
      onclick: (ev) => act(ev.currentTarget, "/resume", { service: svc.name }) }, "Resume")
    : h("button", { class: "small", testid: `pause-${svc.name}`,
      onclick: (ev) => act(ev.currentTarget, "/pause",
        { reason: `${svc.name} paused from the dashboard`, service: svc.name }) }, "Pause");
  const reasons = svc.reasons || [];
  return h("div", { class: `svc st-${svc.state}`, testid: `service-${svc.name}` },
    h("div", { class: "row" }, h("span", { class: "name" }, svc.name), svc.paused ? tag(globalPause ? "paused (all)" : "paused", "paused") : null,
      svc.stopped_on_purpose ? tag("stopped", "paused") : null,
      (svc.requests || []).length ? tag(`${svc.requests[svc.requests.length - 1].verb} queued`, "warning") : null),
    h("div", { class: "hstate", testid: `service-state-${svc.name}` }, svc.state),
    reasons.length ? h("div", { class: "reasons" }, reasons.join("; ")) : null,
    svc.paused && svc.paused_reason ? h("div", { class: "reasons", testid: `service-paused-${svc.name}` }, svc.paused_reason) : null,
    svc.stopped_on_purpose ? h("div", { class: "reasons", testid: `service-stopped-${svc.name}` },
      `stopped on purpose by ${svc.stopped_on_purpose.actor}` +
      (svc.stopped_on_purpose.comment ? ` (${svc.stopped_on_purpose.comment})` : "") +
      `; not started until a person starts it (autonomic start ${svc.name})`) : null,
    (svc.requests || []).map((req, i) => h("div", { class: "reasons", testid: `service-request-${svc.name}-${i}` },
      `${req.verb} requested by ${req.actor}${req.ts ? ` ${ago(req.ts)}` : ""}` +
      (req.comment ? ` (${req.comment})` : "") + ", waiting for the engine")),
    h("div", { class: "meta" }, `${svc.type || "service"} · autonomy `, h("b", {}, svc.autonomy || "-"),
      ` · ${counted(svc.open_incidents || 0, "open incident")}`),
    h("div", { class: "row" }, h("span"), pauseBtn));
}

// the overview lists the newest 1,000 open incidents; in a mass outage the heading says how many more there are
function openHeading(ov) {
  const listed = (ov.open_incidents || []).length;
  const total = ov.open_incidents_total || listed;
  return total > listed ? `Open incidents (the newest ${listed} of ${total})` : "Open incidents";
}

function incidentTable(incidents, testid) {
  if (!incidents || !incidents.length) return h("p", { class: "empty", testid }, "No open incidents.");
  return h("table", { testid },
    h("tr", {}, ["", "service", "cause", "state", "summary", "opened"].map((t) => h("th", {}, t))),
    incidents.map((inc) => h("tr", { testid: `incident-row-${inc.id}` },
      h("td", {}, h("a", { href: `#/incidents/${inc.id}`, testid: `incident-link-${inc.id}` }, short(inc.id))),
      h("td", {}, h("b", {}, inc.service)),
      h("td", {}, inc.cause),
      h("td", { testid: `incident-state-${inc.id}` }, tag(inc.state)),
      h("td", {}, inc.summary),
      h("td", { class: "dim" }, ago(inc.opened_at)))));
}

function breakers(map) {
  const entries = Object.entries(map || {});
  if (!entries.length) return h("p", { class: "empty", testid: "breakers" }, "All breakers closed (no failures yet).");
  return h("table", { testid: "breakers" },
    h("tr", {}, h("th", {}, "scope"), h("th", {}, "state"), h("th", {}, "failures in a row"), h("th", {}, "opened")),
    entries.map(([scope, b]) => h("tr", { testid: `breaker-${scope}` },
      h("td", {}, scope),
      h("td", {}, tag(b.state, b.state === "open" ? "open-breaker" : b.state === "closed" ? "ok" : b.state)),
      h("td", { class: "num" }, b.consecutive_failures ?? 0),
      h("td", { class: "dim" }, b.opened_at ? ago(b.opened_at) : "-"))));
}

function budgets(b) {
  const rows = Object.entries(b || {});
  if (!rows.length) return h("p", { class: "empty" }, "No rate limits configured.");
  return h("div", { class: "panel", testid: "budgets" }, rows.map(([name, v]) => {
    const left = Math.max(0, (v.limit ?? 0) - (v.used ?? 0));
    const pct = v.limit ? Math.min(100, (100 * (v.used || 0)) / v.limit) : 0;
    return h("div", { class: "budget", testid: `budget-${name}` },
      h("span", { style: "width:7rem" }, name.replace(/_/g, " ")),
      h("div", { class: "bar" }, h("span", { style: `width:${pct}%` })),
      h("b", {}, `${left} left`),
      h("span", { class: "dim" }, `(${v.used ?? 0}/${v.limit ?? "∞"}${v.type ? ` ${v.type} actions` : ""})`));
  }));
}

// --- incident ----------------------------------------------------------------------------------

async function renderIncident(id) {
  const chain = await api(`/incidents/${encodeURIComponent(id)}`);
  const inc = chain.incident;
  const awaiting = inc.state === "awaiting_approval";
  return [
    h("p", {}, h("a", { href: "#/" }, "← overview")),
    h("div", { class: "inc-head" },
      h("h1", {}, inc.summary.startsWith(`${inc.service}:`) ? inc.summary : `${inc.service}: ${inc.summary}`),
      h("span", { class: "inc-state", testid: "incident-state" }, tag(inc.state))),
    h("p", { class: "dim" },
      `incident ${short(inc.id)} · cause ${inc.cause} · ${inc.severity} · opened ${when(inc.opened_at)} · `,
      counted(inc.finding_count, "finding"),
      inc.resolution ? ` · resolution ${inc.resolution}` : "",
      inc.closed_at ? ` · closed ${when(inc.closed_at)}` : ""),
    awaiting ? h("p", { class: "big" }, h("a", { href: "#/approvals" }, "This incident awaits your approval →")) : null,
    charts(chain),
    section("Evidence", findingsTable(chain.findings || []), omittedNote((chain.omitted || {}).findings, "finding", inc.id)),
    section("Diagnosis", diagnoses(chain.diagnoses || [])),
    section("Decisions and gates", decisions(chain.decisions || [])),
    section("Actions", actions(chain.actions || [])),
    section("Outcome", outcomes(chain.outcomes || [], Boolean(inc.closed_at))),
    section("Timeline", timeline(chain.audit || []), omittedNote((chain.omitted || {}).audit, "event", inc.id)),
  ];
}

// a long incident's page holds its first and latest findings and events: say how many are left out
function omittedNote(count, noun, id) {
  if (!count) return null;
  return h("p", { class: "dim", testid: `omitted-${noun}s` },
    `${counted(count, noun)} between the first and the latest are not shown (autonomic explain ${short(id)} --json has them all).`);
}

function charts(chain) {
  const series = chain.series || {};
  const findings = chain.findings || [];
  const metrics = [];
  for (const f of findings) if (series[f.metric] && !metrics.includes(f.metric)) metrics.push(f.metric);
  if (!metrics.length) metrics.push(...Object.keys(series).slice(0, 1));
  if (!metrics.length) return section("Chart", h("p", { class: "empty" }, "No metric samples kept for this incident."));
  return section("Chart", metrics.slice(0, 3).map((m) => h("div", { class: "panel", testid: `chart-${m}` },
    h("b", {}, m), chart(m, series[m], findings, chain.actions || [], thresholdValue((chain.thresholds || {})[m])))));
}

// the API gives {value, direction}; a bare number is accepted too
function thresholdValue(t) {
  if (t && typeof t === "object") return typeof t.value === "number" ? t.value : undefined;
  return typeof t === "number" ? t : undefined;
}

// the metric, the threshold, the latest forecast (line to the breach and its 95% band), action markers
function chart(metric, data, findings, actions, threshold) {
  const W = 1000, H = 300, L = 60, R = 20, T = 16, B = 34;
  const ts = data.ts || [], vs = data.values || [];
  const forecast = [...findings].reverse().find((f) => f.metric === metric && f.kind === "forecast" && f.evidence
    && f.evidence.slope_per_s !== undefined);
  const fe = forecast ? forecast.evidence : null;
  if (threshold === undefined || threshold === null) {
    threshold = fe && fe.threshold !== undefined ? fe.threshold : findings.find((f) => f.metric === metric)?.threshold;
  }
  const marks = [];
  for (const a of actions) {
    if (a.applied_at) marks.push({ t: a.applied_at, label: `${a.type} ${a.params?.op || ""} applied`.replace("  ", " ") });
    for (const st of a.steps || []) {
      if (["apply", "baseline", "verify"].includes(st.name)) continue; // apply is applied_at; the others do nothing
      marks.push({ t: st.started_at, label: st.name });
    }
  }
  let x0 = Math.min(...ts), x1 = Math.max(...ts);
  if (!ts.length) { x0 = Date.now() / 1000 - 60; x1 = Date.now() / 1000; }
  let y0 = Math.min(...vs, threshold ?? Infinity), y1 = Math.max(...vs, threshold ?? -Infinity);
  let fStart = null, fEnd = null, bandLow = null, bandHigh = null;
  if (fe) {
    fStart = forecast.ts;
    const span = Math.max(x1 - x0, 10);
    const cap = (v) => (v === null || v === undefined ? fStart + (fe.eta_s ?? span) * 2 + span : fStart + v);
    fEnd = fe.breach_at ?? cap(fe.eta_s);
    bandLow = fStart + (fe.eta_low_s ?? fe.eta_s ?? 0);
    bandHigh = cap(fe.eta_high_s);
    const limit = Math.max(x1, fEnd) + span; // keep a far-out upper bound from flattening the chart
    bandHigh = Math.min(bandHigh, limit);
    x1 = Math.max(x1, fEnd, bandLow);
    x1 = Math.max(x1, Math.min(bandHigh, limit));
    y0 = Math.min(y0, fe.intercept); y1 = Math.max(y1, fe.intercept, fe.threshold ?? y1);
  }
  for (const m of marks) { x0 = Math.min(x0, m.t); x1 = Math.max(x1, m.t); }
  if (!(y1 > y0)) { y1 = y0 + 1; }
  const pad = (y1 - y0) * 0.08; y0 -= pad; y1 += pad;
  if (y0 < 0 && Math.min(...vs) >= 0) y0 = 0;
  if (!(x1 > x0)) x1 = x0 + 1;
  x1 += (x1 - x0) * 0.04; // room for the labels of a marker at the very end
  const X = (t) => L + ((t - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": `${metric} over time`, "data-testid": `svg-${metric}` });
  // grid and axes
  const step = niceStep((y1 - y0) / 4);
  for (let v = Math.ceil(y0 / step) * step; v <= y1 + step * 1e-9; v += step) {
    svg.append(s("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), stroke: "#222a35" }),
      s("text", { x: L - 6, y: Y(v) + 4, "text-anchor": "end" }, num(v)));
  }
  for (let i = 0; i <= 5; i++) {
    const t = x0 + ((x1 - x0) * i) / 5;
    svg.append(s("text", { x: X(t), y: H - 12, "text-anchor": i === 0 ? "start" : i === 5 ? "end" : "middle" },
      timeOfDay(t)));
  }
  if (fe) {
    const band = `${X(fStart)},${Y(fe.intercept)} ${X(bandLow)},${Y(fe.threshold)} ${X(bandHigh)},${Y(fe.threshold)}`;
    svg.append(s("polygon", { points: band, fill: "#a855f733", stroke: "none", "data-testid": "forecast-band" }),
      s("line", { x1: X(fStart), y1: Y(fe.intercept), x2: X(fEnd), y2: Y(fe.threshold), stroke: "#c084fc",
        "stroke-width": 2.5, "stroke-dasharray": "8 5", "data-testid": "forecast-line" }),
      s("circle", { cx: X(fEnd), cy: Y(fe.threshold), r: 5, fill: "#c084fc" }),
      s("text", { x: X(fEnd), y: Y(fe.threshold) - 10, "text-anchor": "middle", fill: "#c084fc" }, "breach"));
  }
  if (threshold !== undefined && threshold !== null) {
    svg.append(s("line", { x1: L, x2: W - R, y1: Y(threshold), y2: Y(threshold), stroke: "#ef4444",
      "stroke-width": 2, "data-testid": "threshold-line" }),
    s("text", { x: L + 6, y: Y(threshold) - 6, "text-anchor": "start", fill: "#ef4444" }, `threshold ${num(threshold)}`));
  }
  if (ts.length) {
    const pts = ts.map((t, i) => `${X(t).toFixed(1)},${Y(vs[i]).toFixed(1)}`).join(" ");
    svg.append(s("polyline", { points: pts, fill: "none", stroke: "#60a5fa", "stroke-width": 2.5,
      "data-testid": "series-line" }));
  }
  marks.forEach((m, i) => {
    svg.append(s("line", { x1: X(m.t), x2: X(m.t), y1: T, y2: H - B, stroke: "#facc15", "stroke-width": 2,
      "data-testid": "action-marker" }),
    s("text", { x: X(m.t) > W / 2 ? X(m.t) - 4 : X(m.t) + 4, y: T + 12 + 14 * (i % 3), fill: "#facc15",
      "text-anchor": X(m.t) > W / 2 ? "end" : "start" }, m.label));
  });
  const legend = h("div", { class: "legend" },
    h("span", {}, h("i", { style: "background:#60a5fa" }), metric),
    threshold !== undefined && threshold !== null ? h("span", {}, h("i", { style: "background:#ef4444" }), "threshold") : null,
    fe ? h("span", { testid: "forecast-text" }, h("i", { style: "background:#c084fc" }),
      `forecast: breach at ${clock(fe.breach_at)}, in ${duration(fe.eta_s)} `
      + `(95%: ${duration(fe.eta_low_s)} to ${duration(fe.eta_high_s)})`) : null,
    marks.length ? h("span", {}, h("i", { style: "background:#facc15" }), "actions") : null);
  return h("div", {}, svg, legend);
}

// 1, 2 or 5 times a power of ten: tick values a person reads at a glance
function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

function findingsTable(findings) {
  if (!findings.length) return h("p", { class: "empty" }, "No findings.");
  return h("table", { testid: "findings" },
    h("tr", {}, ["time", "kind", "metric", "value", "threshold", "summary", "evidence"].map((t) => h("th", {}, t))),
    findings.map((f) => h("tr", {},
      h("td", { class: "dim" }, clock(f.ts)), h("td", {}, tag(f.kind, f.severity)), h("td", {}, f.metric),
      h("td", { class: "num" }, num(f.value)), h("td", { class: "num" }, num(f.threshold)), h("td", {}, f.summary),
      h("td", {}, evidenceText(f.evidence)))));
}

function evidenceText(ev) {
  if (!ev || !Object.keys(ev).length) return "";
  const keys = ["eta_s", "eta_low_s", "eta_high_s", "slope_per_s", "r2", "zscore", "ema"];
  const shown = keys.filter((k) => k in ev).map((k) => `${k} ${k.startsWith("eta") ? duration(ev[k]) : num(ev[k])}`);
  if (!shown.length) {
    for (const [k, v] of Object.entries(ev)) {
      shown.push(`${k} ${Array.isArray(v) ? v.map(num).join(", ") : typeof v === "object" ? JSON.stringify(v) : num(v)}`);
    }
  }
  return h("span", { class: "mono dim" }, shown.join(" · ").slice(0, 240));
}

function diagnoses(list) {
  if (!list.length) return h("p", { class: "empty" }, "Not diagnosed yet.");
  return list.map((d) => h("div", { class: "panel", testid: "diagnosis" },
    h("div", { class: "big" }, d.pattern_id ? `pattern ${d.pattern_id}` : "no known pattern",
      ` · confidence ${Math.round((d.confidence || 0) * 100)}%`),
    h("div", {}, "proposed: ", h("b", {}, actionText(d.action))),
    h("div", { class: "dim" }, d.rationale)));
}

function decisions(list) {
  if (!list.length) return h("p", { class: "empty" }, "No decision yet.");
  return list.map((d) => h("div", { class: "panel", testid: `decision-${d.id}`, style: "margin-bottom:0.8rem" },
    // ruling and ruled_by (the API's): a person's approval that a gate refused, or that was not
    // acted on because the trouble cleared, is not shown as the person's denial
    h("div", { class: "inc-head" }, tag(d.ruling || d.verdict,
        d.verdict === "approved" ? "ok" : d.verdict === "denied" ? (d.ruling === "not acted on" ? "inconclusive" : "bad") : "needs"),
      h("b", {}, actionText(d.action)),
      h("span", { class: "dim", testid: "ruled-by" }, `${d.ruled_by || `by ${d.decided_by}`} at ${clock(d.ts)}`),
      d.comment ? h("i", {}, `“${d.comment}”`) : null,
      // a request recorded with its expiry (by the engine that asked)
      d.expires_at ? h("span", { class: "dim", testid: "request-expiry" }, `request expiry ${when(d.expires_at)}`) : null),
    gates(d.gates || [])));
}

function gates(list) {
  if (!list.length) return null;
  return h("div", { testid: "gates" }, list.map((g) => h("div", { class: "gate", testid: `gate-${g.gate}` },
    g.passed ? tag("pass") : g.needs_approval ? tag("approval", "needs") : tag("fail"),
    h("b", {}, g.gate), h("span", {}, g.reason))));
}

function actions(list) {
  if (!list.length) return h("p", { class: "empty", testid: "actions" }, "Nothing was done.");
  return list.map((a) => h("div", { class: "panel", testid: `action-${a.id}`, style: "margin-bottom:0.8rem" },
    h("div", { class: "inc-head" }, h("b", { class: "big" }, `${a.type} ${params(a.params)}`), tag(a.state),
      h("span", { class: "dim" }, `on ${a.service}; created ${clock(a.created_at)}`,
        a.applied_at ? `, applied ${clock(a.applied_at)}` : "")),
    a.error ? h("div", { style: "color:#ff8a8a" }, a.error) : null,
    (a.steps || []).map((st) => h("div", { class: "step" }, st.ok ? "✔ " : "✘ ", h("b", {}, st.name),
      h("span", { class: "dim" }, ` ${clock(st.started_at)} (${num(st.finished_at - st.started_at)} s) `),
      h("span", { class: "mono dim" }, stepDetail(st.detail))))));
}

function stepDetail(detail) {
  const parts = [];
  for (const [k, v] of Object.entries(detail || {})) {
    if (Array.isArray(v)) parts.push(`${k}: ${counted(v.length, "value")}`);
    else if (v && typeof v === "object") parts.push(`${k}: ${params(v)}`);
    else parts.push(`${k}: ${v}`);
  }
  return parts.join(" · ").slice(0, 240);
}

// a closed incident gets no outcome later: "No outcome.", not "yet"; a rollback says whether its
// undo restored health (the check after it, as the engine's alert and `autonomic explain` do)
function outcomes(list, closed) {
  if (!list.length) return h("p", { class: "empty", testid: "outcome" }, closed ? "No outcome." : "No outcome yet.");
  return list.map((o) => h("div", { class: "panel", testid: "outcome" },
    h("div", { class: "inc-head" }, tag(o.verdict, o.verdict), h("b", {}, o.reason), rolledBack(o),
      h("span", { class: "dim" }, `after ${num(o.duration_s)} s`)),
    h("div", { class: "mono dim" }, `before: ${params(o.before)} → after: ${params(o.after)}`)));
}

function rolledBack(o) {
  if (!o.rolled_back) return null;
  if (o.undo_verdict == null) return tag("rolled back", "bad");
  return o.undo_verdict === "pass" ? tag("rolled back: the undo restored health", "bad")
    : tag(`rolled back, but the undo did NOT restore health (its check: ${o.undo_verdict})`, "bad");
}

function timeline(events) {
  if (!events.length) return h("p", { class: "empty" }, "No events.");
  return h("ul", { class: "timeline", testid: "timeline" }, events.map((e) => h("li", {},
    h("span", { class: "dim" }, clock(e.ts)), h("span", { class: "kind" }, e.kind), h("span", {}, e.actor),
    h("span", { class: "dim" }, summary(e.data)))));
}

// one line about an audit event's data: its sentence when it has one, else its fields
function summary(data) {
  if (!data) return "";
  const text = data.summary || data.rationale || data.why || data.reason || data.comment || data.describe;
  if (text) return String(text);
  if (data.action && typeof data.action === "object") return actionText(data.action);
  const parts = [];
  for (const [k, v] of Object.entries(data)) {
    if (["value", "nouns", "key"].includes(k) || v === null || v === "") continue;
    const isTime = typeof v === "number" && /(_at|until|^ts)$/.test(k);
    const shown = isTime ? clock(v) : typeof v === "object" ? (Array.isArray(v) ? v.join(", ") : params(v)) : String(v);
    parts.push(`${k}: ${/^[0-9a-f]{32}$/.test(shown) ? short(shown) : shown}`);
  }
  return parts.join(" · ").slice(0, 240);
}

// "approval:3df5...bf" -> "approval:3df5c58c"; ids and hashes are cut to 8 characters
function subjectText(subject) {
  return String(subject).replace(/[0-9a-f]{32,}/g, (m) => short(m));
}

// --- approvals ---------------------------------------------------------------------------------

async function renderApprovals() {
  const queue = await api("/approvals");
  return [
    h("h1", {}, "Approvals"),
    queue.length ? null : h("p", { class: "empty big", testid: "approvals-empty" }, "Nothing awaits approval."),
    h("div", { testid: "approvals" }, queue.map(approvalCard)),
  ];
}

// when a request expires (the API's expires_at: as recorded by the engine that asked), in words
function expiresText(ts) {
  const left = ts - Date.now() / 1000;
  if (left <= 0) return `expired at ${when(ts)}`;
  const inWords = left < 60 ? `${Math.round(left)} s` : left < 3600 ? `${Math.round(left / 60)} min`
    : `${(left / 3600).toFixed(1)} h`;
  return `expires at ${when(ts)} (in ${inWords})`;
}

function approvalCard({ incident: inc, decision, answer, expires_at: expiresAt }) {
  const seen = decision ? decision.id : null; // the request this card shows: an answer names it
  decision = decision || { gates: [], action: null, ts: inc.updated_at };
  const comment = draft(`comment-${inc.id}`, { testid: `comment-${inc.id}`,
    placeholder: "comment (recorded in the audit log)", "aria-label": "comment" });
  const waiting = (decision.gates || []).filter((g) => !g.passed);
  return h("div", { class: "panel approval", testid: `approval-${inc.id}` },
    h("div", { class: "what" }, `${inc.service}: ${actionText(decision.action)}?`),
    h("div", {}, inc.summary, " ", h("a", { href: `#/incidents/${inc.id}` }, `incident ${short(inc.id)} →`)),
    h("div", { class: "dim" }, `asked ${ago(decision.ts)}`,
      expiresAt ? h("span", { testid: `expires-${inc.id}` }, ` · ${expiresText(expiresAt)}`) : null,
      waiting.length ? ` · ${waiting.map((g) => (g.reason.startsWith(g.gate.replaceAll("_", " ")) ? g.reason : `${g.gate}: ${g.reason}`)).join("; ")}` : ""),
    answer ? h("div", { class: "big", testid: `answered-${inc.id}` },
      `${answer.verdict === "approve" ? "Approved" : "Denied"} by ${answer.actor}; the engine picks it up on its next tick`)
      : null,
    answer ? null : h("div", { class: "act" }, comment,
      h("button", { class: "go", testid: `approve-${inc.id}`,
        onclick: (ev) => act(ev.currentTarget, `/approvals/${inc.id}/approve`, { comment: comment.value, decision: seen }, `comment-${inc.id}`) }, "Approve"),
      h("button", { class: "stop", testid: `deny-${inc.id}`,
        onclick: (ev) => act(ev.currentTarget, `/approvals/${inc.id}/deny`, { comment: comment.value, decision: seen }, `comment-${inc.id}`) }, "Deny")));
}

// --- audit -------------------------------------------------------------------------------------

const AUDIT_SHOWN = 300;
// the last verification of the whole chain and when it ran: it reads every event, so it runs when
// the audit page is opened or on request, and a redraw for a new event shows the newest events
// against that result instead of reading the whole log again
let auditVerified = null;

async function renderAudit(opened) {
  if (opened || !auditVerified) auditVerified = { report: await api("/audit/verify"), at: Date.now() / 1000 };
  const { report, at } = auditVerified;
  const page = await api(`/audit?newest=true&limit=${AUDIT_SHOWN}`);
  const list = (Array.isArray(page) ? page : page.events || []).slice().sort((a, b) => b.seq - a.seq);
  const newestSeq = list.length ? list[0].seq : 0;
  // retention archives the oldest entries: the chain is verified from seq from_seq on
  const pruned = Math.max(0, (report.from_seq || 1) - 1);
  const unchecked = Math.max(0, newestSeq - pruned - (report.checked || 0));
  const ok = report && report.ok;
  const again = h("button", { testid: "audit-verify-again",
    onclick: () => { auditVerified = null; render(); } }, "Verify again");
  return [
    h("h1", {}, "Audit log"),
    h("div", { class: `verify ${ok ? "ok" : "bad"}`, testid: "audit-verify" },
      ok ? `✔ chain verified at ${when(at)}: ${counted(report.checked, "event")}, every hash and link intact` +
           (pruned ? ` (from seq ${pruned + 1}: seq 1..${pruned} were pruned by retention into the audit archive)` : "")
        : `✘ chain broken (checked at ${when(at)}): ${(report.problems || []).join("; ")}`,
      unchecked ? h("span", { testid: "audit-unverified" }, ` (${unchecked} newer not yet verified) `) : " ",
      again),
    h("p", { class: "dim" }, `newest first; showing ${list.length} of ${counted(Math.max(newestSeq - pruned, report.checked || 0), "event")}`),
    h("table", { testid: "audit-table" },
      h("tr", {}, ["#", "time", "actor", "event", "subject", "detail"].map((t) => h("th", {}, t))),
      list.map((e) => h("tr", { testid: `audit-${e.seq}` },
        h("td", { class: "num dim" }, e.seq), h("td", { class: "dim" }, when(e.ts)), h("td", {}, e.actor),
        h("td", { class: "kind" }, e.kind), h("td", { class: "mono" }, /^[0-9a-f]{32}$/.test(e.subject)
          ? h("a", { href: `#/incidents/${e.subject}` }, short(e.subject)) : subjectText(e.subject)),
        h("td", { class: "detail" }, summary(e.data))))),
  ];
}

// --- start -------------------------------------------------------------------------------------

takeTokenFromUrl();
$("#zone").textContent = zoneName();
connectEvents();
render(true);
