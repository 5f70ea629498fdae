// syndic console. Every value from the member is put in the page as text
// (textContent, createTextNode): never innerHTML, so a key named <script>
// shows as text.
"use strict";

const state = { token: sessionStorage.getItem("syndic-token") || "", view: "", timer: 0, renewal: 0, source: null, live: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, String(v));
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c)))));
}

function showError(text) {
  const box = document.getElementById("error");
  box.textContent = text;
  box.hidden = !text;
}

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  if (state.token) opts.headers["Authorization"] = state.token;
  if (opts.body && typeof opts.body !== "string") {
    opts.body = JSON.stringify(opts.body);
    opts.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path, opts);
  if (resp.status === 401 && path !== "/ui/api/login") {
    showLogin();
    throw new Error("log in first");
  }
  if (!resp.ok) throw new Error(resp.status + " " + (await resp.text()));
  return resp.json();
}

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function fmtTime(unixS) { return new Date(unixS * 1000).toLocaleTimeString(); }

function card(label, value, cls) {
  return el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "value " + (cls || "") }, value));
}

// ------------------------------------------------------------ charts

const SVG = "http://www.w3.org/2000/svg";

function chart(title, points, unit) {
  const box = el("div", { class: "chart" }, el("h4", {}, title));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 360 120");
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1e-9, ...points.map((p) => p[1]));
  const t0 = points.length ? points[0][0] : 0;
  const t1 = points.length ? points[points.length - 1][0] : 1;
  const span = Math.max(1e-9, t1 - t0);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.map((p) => [((p[0] - t0) / span) * 356 + 2, 116 - (p[1] / max) * 110].join(",")).join(" "));
  svg.append(line);
  const last = points.length ? points[points.length - 1][1] : 0;
  // The caption is HTML: text inside a stretched SVG would be distorted.
  box.append(el("div", { class: "caption" }, "max " + max.toFixed(2) + " " + unit + " · now " + last.toFixed(2)));
  box.append(svg);
  return box;
}

// ------------------------------------------------------------ views

async function viewCluster() {
  const c = await api("/ui/api/cluster");
  const leader = c.leader_id || "none";
  document.getElementById("cluster-summary").replaceChildren(
    card("leader", leader, c.leader_id ? "ok" : "bad"),
    card("this member", c.name + " (" + c.member_id + ")"),
    card("term", c.term),
    card("commit index", c.commit_index),
    card("applied index", c.applied_index),
    card("db size", fmtBytes(c.db_size_bytes)),
    card("quota", fmtBytes(c.quota_bytes) + " (" + ((100 * c.db_size_bytes) / c.quota_bytes).toFixed(1) + "%)"),
  );
  fill(document.querySelector("#cluster-members tbody"), c.members.map((m) => {
    const peer = c.peers[m.id];
    const link = m.id === c.member_id ? "self" : peer ? (peer.connected ? "connected" : "down") : "unknown";
    // Round trips are timed by the leader's heartbeats: other members show none.
    const rtt = peer && peer.round_trip_s > 0 ? (peer.round_trip_s * 1000).toFixed(2) + " ms" : "";
    return [m.id, m.name, m.id === c.leader_id ? "leader" : m.is_learner ? "learner" : "follower", m.peer_urls.join(" "), m.client_urls.join(" "), link, rtt];
  }));
  document.getElementById("cluster-alarms").replaceChildren(
    ...(c.alarms.length ? c.alarms.map((a) => el("li", { class: "bad" }, a)) : [el("li", {}, "none")]));
  document.getElementById("cluster-leader-chart").replaceChildren(
    chart("leader changes seen", c.leader_history.map((h) => [h.at_unix_s, h.leader_changes]), ""));
}

function keysPrefix() { return document.getElementById("keys-prefix").value; }

async function viewKeys() {
  const prefix = keysPrefix();
  const data = await api("/ui/api/keys?prefix=" + encodeURIComponent(prefix));
  document.getElementById("keys-folders").replaceChildren(...data.folders.map((f) =>
    el("li", {}, el("button", { class: "folder", onclick: () => { document.getElementById("keys-prefix").value = f; refresh(); } }, f))));
  fill(document.querySelector("#keys-table tbody"), data.keys.map((k) => [
    el("button", { class: "link key", onclick: () => showRevisions(k.key) }, k.key),
    k.encoding === "utf-8" ? k.value : "(binary, " + k.value_bytes + " bytes)",
    k.mod_revision, k.version, k.lease ? k.lease.toString(16) : "",
    el("button", { class: "delete", onclick: () => deleteKey(k.key) }, "delete"),
  ]));
  document.getElementById("keys-more").hidden = !data.more;
  state.listed = { prefix, revision: data.revision };
}

async function showRevisions(key) {
  document.getElementById("rev-key").textContent = key;
  const data = await api("/ui/api/key?key=" + encodeURIComponent(key));
  fill(document.querySelector("#rev-table tbody"), data.revisions.map((r) => [r.mod_revision, r.version, r.value]));
}

async function deleteKey(key) {
  await api("/ui/api/key?key=" + encodeURIComponent(key), { method: "DELETE" });
  await viewKeys();
}

function watchPrefix() {
  const list = document.getElementById("watch-events");
  list.replaceChildren();
  const prefix = keysPrefix();
  // Start just after the listing on screen, so a change made between the
  // listing and the watch is shown too.
  const from = state.listed && state.listed.prefix === prefix ? state.listed.revision + 1 : 0;
  openWatch(prefix, from);
}

// EventSource resumes after the last event's id (its revision) by itself when
// the connection drops, with the URL it was opened with: a renewed token
// reopens the watch from there (renewToken).
function openWatch(prefix, from) {
  if (state.source) state.source.close();
  const list = document.getElementById("watch-events");
  const status = document.getElementById("watch-status");
  // EventSource sends no headers: with auth on the token goes in the query.
  const url = "/ui/api/watch?prefix=" + encodeURIComponent(prefix) + (from ? "&from=" + from : "") + tokenQuery("&");
  const source = new EventSource(url);
  state.source = source;
  source.prefix = prefix;
  source.next = from;
  status.textContent = "connecting";
  source.onopen = () => { status.textContent = "watching " + (prefix || "every key"); };
  source.onerror = () => {
    status.textContent = source.readyState === EventSource.CLOSED ? "watch stopped" : "reconnecting";
  };
  source.addEventListener("compacted", (msg) => {
    source.close();
    status.textContent = "watch stopped: revisions up to " + JSON.parse(msg.data).compact_revision + " were compacted";
  });
  source.onmessage = (msg) => {
    const batch = JSON.parse(msg.data);
    for (const ev of batch.events) list.prepend(el("li", {}, ev.type + " " + ev.key + " = " + ev.value + " @" + ev.mod_revision));
    while (list.children.length > 200) list.lastChild.remove();
    if (msg.lastEventId) source.next = Number(msg.lastEventId) + 1;
  };
}

// With auth on a token lasts token_ttl_s (--auth-token-ttl), counted from
// the whole second it was issued in, so up to a second less: the console
// renews it at half of what is sure to be left, for as long as it is open.
function scheduleRenewal(ttlS) {
  clearTimeout(state.renewal);
  if (ttlS > 0) state.renewal = setTimeout(renewToken, Math.max(ttlS - 1, 0.5) * 500);
}

async function renewToken() {
  let r;
  try {
    r = await api("/ui/api/session/renew", { method: "POST" });
  } catch (err) {
    return; // a voided token: api() has shown the login form
  }
  state.token = r.token;
  sessionStorage.setItem("syndic-token", r.token);
  scheduleRenewal(r.token_ttl_s);
  // The live views carry the token in their URLs: reopened, a reconnect
  // after the old token expires is not refused.
  if (state.live) liveServices();
  if (state.source && state.source.readyState !== EventSource.CLOSED) openWatch(state.source.prefix, state.source.next);
}

async function viewLeases() {
  const data = await api("/ui/api/leases");
  fill(document.querySelector("#leases-table tbody"), data.leases.map((l) => [
    l.id, l.ttl_s, l.granted_ttl_s, l.keys.join(", ") + (l.keys_hidden ? " (+" + l.keys_hidden + " hidden)" : "")]));
}

// EventSource sends no headers: with auth on the token goes in the query.
function tokenQuery(sep) {
  return state.token ? sep + "token=" + encodeURIComponent(state.token) : "";
}

// The services page follows the registry as it changes: the member sends the
// whole listing after every change (server-sent events), no polling.
function liveServices() {
  if (state.live) state.live.close();
  state.live = new EventSource("/ui/api/services/live" + tokenQuery("?"));
  state.live.onmessage = (msg) => { renderServices(JSON.parse(msg.data)); showError(""); };
  state.live.onerror = () => showError("live updates interrupted; reconnecting");
}

async function viewServices() {
  renderServices(await api("/ui/api/services"));
}

function renderServices(data) {
  const rows = [];
  for (const svc of data.services) {
    for (const inst of svc.instances) {
      const checks = el("span", {}, ...inst.checks.map((c) =>
        el("span", { class: c.status === "passing" ? "ok" : "bad", title: c.output }, c.id + ": " + c.status + " ")));
      const remove = el("button", { class: "deregister", onclick: async () => {
        const q = new URLSearchParams({ namespace: svc.namespace, service: svc.service, instance_id: inst.id });
        try {
          await api("/ui/api/services?" + q, { method: "DELETE" });
          await viewServices();
        } catch (err) { showError(String(err.message || err)); }
      } }, "deregister");
      rows.push([svc.namespace, svc.service, inst.id, inst.address + ":" + inst.port, checks, remove]);
    }
  }
  fill(document.querySelector("#services-table tbody"), rows);
}

const cfg = { group: "", dataId: "", head: 0, format: "text", history: [] };

function cfgBase(group, dataId) {
  const ns = document.getElementById("config-ns").value;
  return "/v1/config/" + [ns, group, dataId].map(encodeURIComponent).join("/");
}

async function viewConfig() {
  const ns = document.getElementById("config-ns").value;
  const ids = await api("/v1/config/" + encodeURIComponent(ns));
  document.getElementById("config-ids").replaceChildren(...ids.map((c) =>
    el("li", {}, el("button", { class: "config-id", onclick: () => openConfig(c.group, c.data_id) }, c.group + "/" + c.data_id))));
  if (cfg.dataId) await openConfig(cfg.group, cfg.dataId);
}

async function openConfig(group, dataId) {
  Object.assign(cfg, { group: group, dataId: dataId });
  const base = cfgBase(group, dataId);
  const current = await api(base);
  cfg.head = current.head_version;
  cfg.format = current.format;
  cfg.history = await api(base + "/history");
  document.getElementById("config-detail").hidden = false;
  document.getElementById("config-path").textContent = group + "/" + dataId;
  document.getElementById("config-version").textContent = current.version;
  document.getElementById("config-content").textContent = current.content === null ? "(encrypted)" : current.content;
  fill(document.querySelector("#config-history tbody"), cfg.history.map((e) => {
    const action = e.kind === "gray"
      ? el("button", { class: "promote", onclick: () => configAction(base + "/gray/" + encodeURIComponent(e.gray_name) + "/promote", {}) }, "promote")
      : el("button", { class: "rollback", onclick: () => configAction(base + "/rollback", { version: e.version }) }, "roll back to this");
    return [e.version, e.kind, e.gray_name || "", e.author, fmtTime(e.time_ms / 1000), e.content === null ? "(encrypted)" : e.content, action];
  }));
  for (const id of ["diff-a", "diff-b"]) {
    document.getElementById(id).replaceChildren(...cfg.history.map((e) => el("option", { value: e.version }, String(e.version))));
  }
  if (cfg.history.length > 1) document.getElementById("diff-a").value = String(cfg.history[1].version);
}

async function configAction(path, body) {
  try {
    await api(path, { method: path.endsWith("/rollback") || path.endsWith("/promote") ? "POST" : "PUT",
      body: Object.assign({ expected_version: cfg.head, author: "console" }, body) });
    await openConfig(cfg.group, cfg.dataId);
    showError("");
  } catch (err) { showError(String(err.message || err)); }
}

// Line diff by longest common subsequence; bounded so a huge config cannot hang the page.
const DIFF_LINES_MAX = 2000;

function lineDiff(a, b) {
  const x = a.split("\n").slice(0, DIFF_LINES_MAX), y = b.split("\n").slice(0, DIFF_LINES_MAX);
  const n = x.length, m = y.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) { out.push(["  ", x[i]]); i++; j++; }
    else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) { out.push(["- ", x[i]]); i++; }
    else { out.push(["+ ", y[j]]); j++; }
  }
  return out;
}

function showDiff() {
  const byVersion = (v) => cfg.history.find((e) => String(e.version) === v);
  const a = byVersion(document.getElementById("diff-a").value);
  const b = byVersion(document.getElementById("diff-b").value);
  if (!a || !b) return;
  document.getElementById("config-diff").replaceChildren(...lineDiff(a.content || "", b.content || "").map(([mark, line]) =>
    el("div", { class: mark === "+ " ? "diff-add" : mark === "- " ? "diff-del" : "" }, mark + line)));
}

// Configs looked at for the traffic page; each costs a settings read.
const TRAFFIC_CONFIGS_MAX = 100;

async function viewTraffic() {
  const ns = document.getElementById("traffic-ns").value;
  const base = "/v1/config/" + encodeURIComponent(ns);
  const ids = (await api(base)).slice(0, TRAFFIC_CONFIGS_MAX);
  const rows = [];
  for (const c of ids) {
    const path = base + "/" + encodeURIComponent(c.group) + "/" + encodeURIComponent(c.data_id);
    const settings = await api(path + "/settings");
    if (!settings.traffic_rules) continue;
    const current = await api(path);
    rows.push([c.group, c.data_id, current.version, el("pre", {}, current.content === null ? "(encrypted)" : current.content)]);
  }
  fill(document.querySelector("#traffic-table tbody"), rows);
}

const CHARTS = [
  ["request_rate", "requests/s", "/s"],
  ["latency_ms_p99", "latency p99", "ms"],
  ["proposals_rate", "proposals committed/s", "/s"],
  ["fsync_ms_p99", "WAL fsync p99", "ms"],
  ["watchers", "watchers", ""],
  ["db_size_bytes", "db size", "B"],
];

async function viewMetrics() {
  const data = await api("/ui/api/metrics");
  document.getElementById("metrics-charts").replaceChildren(...CHARTS.map(([name, title, unit]) =>
    chart(title, data.samples.map((s) => [s.at_unix_s, s[name]]), unit)));
}

async function viewAlerts() {
  const data = await api("/alerts");
  fill(document.querySelector("#alerts-table tbody"), data.alerts.map((a) => [
    a.name, el("span", { class: a.state === "firing" ? "bad" : "ok" }, a.state),
    a.since_unix_s ? fmtTime(a.since_unix_s) : "", a.value === null ? "" : a.value, a.summary]));
}

async function viewDebug() {
  const data = await api("/debug/slowlog");
  fill(document.querySelector("#slow-table tbody"), data.entries.map((e) => [
    fmtTime(e.at_unix_s), e.kind, e.size_bytes, e.duration_ms.toFixed(1), e.code, e.trace_id]));
}

const VIEWS = { cluster: viewCluster, keys: viewKeys, leases: viewLeases, services: viewServices, config: viewConfig, traffic: viewTraffic, metrics: viewMetrics, alerts: viewAlerts, debug: viewDebug };
// Views that follow the member without a reload poll this often.
const REFRESH_MS = 3000;

async function refresh() {
  try {
    await VIEWS[state.view]();
    showError("");
  } catch (err) {
    showError(String(err.message || err));
  }
}

function show(view) {
  if (!VIEWS[view]) view = "cluster";
  state.view = view;
  document.getElementById("login").hidden = true;
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== "view-" + view;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === view);
  clearInterval(state.timer);
  if (state.live) { state.live.close(); state.live = null; }
  refresh();
  if (view === "services") liveServices();
  else if (!["keys", "config", "traffic"].includes(view)) state.timer = setInterval(refresh, REFRESH_MS);
}

function showLogin() {
  clearInterval(state.timer);
  clearTimeout(state.renewal);
  if (state.live) { state.live.close(); state.live = null; }
  for (const s of document.querySelectorAll(".view")) s.hidden = true;
  document.getElementById("login").hidden = false;
}

async function start() {
  const s = await (await fetch("/ui/api/session", { headers: state.token ? { Authorization: state.token } : {} })).json();
  document.getElementById("who").textContent = s.auth_enabled ? (s.user ? "user " + s.user : "not logged in") : "auth off";
  for (const a of document.querySelectorAll("#nav a")) {
    if (!s.admin && (a.dataset.view === "alerts" || a.dataset.view === "debug")) a.hidden = true;
  }
  if (s.auth_enabled && !s.user) { showLogin(); return; }
  if (s.auth_enabled) scheduleRenewal(s.token_ttl_s);
  show(location.hash.slice(1));
}

document.addEventListener("DOMContentLoaded", () => {
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  document.getElementById("keys-go").addEventListener("click", refresh);
  document.getElementById("keys-up").addEventListener("click", () => {
    const p = keysPrefix().replace(/[^/]*\/?$/, "");
    document.getElementById("keys-prefix").value = p;
    refresh();
  });
  document.getElementById("keys-watch").addEventListener("click", watchPrefix);
  document.getElementById("put-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    try {
      await api("/ui/api/key", { method: "PUT", body: { key: form.get("key"), value: form.get("value") } });
      await viewKeys();
      showError("");
    } catch (err) { showError(String(err.message || err)); }
  });
  document.getElementById("register-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    try {
      await api("/ui/api/services", { method: "POST", body: {
        service: form.get("service"), instance_id: form.get("instance_id"),
        address: form.get("address"), port: Number(form.get("port") || 0) } });
      await viewServices();
      showError("");
    } catch (err) { showError(String(err.message || err)); }
  });
  document.getElementById("config-list").addEventListener("click", refresh);
  document.getElementById("traffic-list").addEventListener("click", refresh);
  document.getElementById("diff-go").addEventListener("click", showDiff);
  document.getElementById("publish-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    const group = form.get("group"), dataId = form.get("data_id");
    try {
      // A new config is published with expected version 0; asking for it first would be a 404.
      const ns = document.getElementById("config-ns").value;
      const known = (await api("/v1/config/" + encodeURIComponent(ns))).some((c) => c.group === group && c.data_id === dataId);
      const head = known ? (await api(cfgBase(group, dataId))).head_version : 0;
      await api(cfgBase(group, dataId), { method: "PUT", body: {
        content: form.get("content"), format: form.get("format"), expected_version: head, author: "console" } });
      Object.assign(cfg, { group: group, dataId: dataId });
      await viewConfig();
      showError("");
    } catch (err) { showError(String(err.message || err)); }
  });
  document.getElementById("gray-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    const [k, v] = String(form.get("label")).split("=");
    await configAction(cfgBase(cfg.group, cfg.dataId) + "/gray/" + encodeURIComponent(form.get("name")), {
      content: form.get("content"), format: cfg.format, selector: { labels: { [k]: v || "" } } });
  });
  document.getElementById("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    try {
      const r = await api("/ui/api/login", { method: "POST", body: { user: form.get("user"), password: form.get("password") } });
      state.token = r.token;
      sessionStorage.setItem("syndic-token", r.token);
      await start();
    } catch (err) { showError(String(err.message || err)); }
  });
  start();
});
