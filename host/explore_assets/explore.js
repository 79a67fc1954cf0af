// SPDX-License-Identifier: MIT
// The connhost explorer: renders /api/v1/ answers. Every value from the
// store goes into text nodes or attributes (never markup), so a display
// name such as <script> shows as text; the CSP forbids inline script.
"use strict";

const app = document.getElementById("app");

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {}))
    if (v !== null && v !== undefined) e.setAttribute(k, v);
  for (const k of kids)
    if (k !== null && k !== undefined)
      e.append(typeof k === "string" || typeof k === "number" ? String(k) : k);
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function apiUrl(cmd, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {}))
    if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return "/api/v1/" + cmd + (s ? "?" + s : "");
}

async function api(cmd, params) {
  const headers = {};
  const tok = sessionStorage.getItem("connhost-token");
  if (tok) headers.Authorization = "Bearer " + tok;
  const r = await fetch(apiUrl(cmd, params), { headers });
  if (r.status === 401) throw new Error("unauthorized: this listener needs the serve.auth_token");
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function flat(v) {
  if (v === null || v === undefined) return "";
  if (Array.isArray(v)) return v.join("; ");
  if (typeof v === "boolean") return v ? "yes" : "no";
  return String(v);
}

const isPerson = (r) => r.type === "user" || r.type === "account";

// A table of rows; `links` maps a column to a function giving its href.
function table(id, rows, cols, links, csv) {
  const out = el("section", { id: id });
  if (csv)
    out.append(el("a", { class: "csv", href: csv, download: id + ".csv" }, "Download CSV"));
  if (!rows.length) {
    out.append(el("p", {}, "(none)"));
    return out;
  }
  const t = el("table", { "data-table": id });
  t.append(el("tr", {}, ...cols.map((c) => el("th", {}, c))));
  for (const r of rows) {
    const tr = el("tr", { "data-entitlement": r.entitlement, "data-key": r.key || r.principal || r.resource });
    for (const c of cols) {
      let v = flat(r[c]);
      const href = links && links[c] && links[c](r);
      const cell = el("td", {}, href ? el("a", { href: href }, v) : v);
      if (c === "stale" && r.stale) cell.replaceChildren(el("span", { class: "stale" }, "stale"));
      tr.append(cell);
    }
    t.append(tr);
  }
  out.append(t);
  return out;
}

// A note on data from a failed instance: for the rows shown when given.
function staleBanner(ans, rows) {
  if (!ans.stale || !ans.stale.length) return "";
  if (rows && !rows.some((r) => r.stale)) return "";
  return el("p", { class: "stale-note" }, el("span", { class: "stale" }, "stale"),
    " answering from older data for: " +
    ans.stale.map((s) => s.tenant + "/" + s.instance + " (" + s.status + ", data of run " + s.data_run + ")").join(", "));
}

const personLink = (key) => "#/person?who=" + encodeURIComponent(key);
const resourceLink = (key) => "#/resource?what=" + encodeURIComponent(key);

// person -> group -> entitlement, one line per path.
function pathGraph(row) {
  const ent = row.resource_name + " · " + row.slug, paths = [];
  if (row.direct) paths.push([row.principal_name, ent]);
  for (const g of row.via_names || []) paths.push([row.principal_name, g, ent]);
  const w = 150, h = 26, g = svg("svg", { class: "graph", width: 3 * w, height: paths.length * h, role: "img" });
  paths.forEach((p, i) => {
    p.forEach((name, j) => {
      const x = j * w + 4, y = i * h + 4;
      g.append(svg("rect", { x: x, y: y, width: w - 40, height: h - 8, rx: 4, fill: j === 0 ? "#a8dadc" : j === p.length - 1 ? "#f1faee" : "#e9c46a", stroke: "#457b9d" }));
      const t = svg("text", { x: x + 4, y: y + 13 }, Array.from(String(name == null ? "" : name)).slice(0, 16).join(""));
      t.append(svg("title", {}, String(name == null ? "" : name)));
      g.append(t);
      if (j + 1 < p.length)
        g.append(svg("line", { x1: x + w - 40, y1: y + (h - 8) / 2, x2: x + w, y2: y + (h - 8) / 2, stroke: "#1d3557" }));
    });
  });
  return g;
}

const views = {
  async search(q) {
    const form = el("form", {}, el("input", { name: "q", value: q.get("q") || "", placeholder: "name, email, accountId, group or project", "aria-label": "search" }), " ", el("button", {}, "Search"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      location.hash = "#/?q=" + encodeURIComponent(form.q.value);
    });
    app.replaceChildren(el("h1", {}, "Search"), form);
    if (!q.get("q")) return;
    const ans = await api("resources", { search: q.get("q"), limit: 500 });
    app.append(table("results", ans.resources, ["display_name", "type", "instance", "status", "account_type", "emails", "key", "stale"],
      { display_name: (r) => (isPerson(r) ? personLink(r.key) : resourceLink(r.key)) }));
  },
  async person(q) {
    const ans = await api("access", { who: q.get("who"), limit: 100000 });
    const who = ans.accounts.length ? ans.accounts[0].display_name : q.get("who");
    app.replaceChildren(el("h1", { id: "person-name" }, who), staleBanner(ans, ans.accounts.concat(ans.access)),
      el("h2", {}, "Identity"),
      table("accounts", ans.accounts, ["display_name", "instance", "type", "status", "account_type", "emails", "resource", "stale"]),
      el("h2", {}, "Entitlements"),
      table("access", ans.access, ["resource_name", "slug", "resource_type", "instance", "direct", "via_names", "path", "stale"],
        { resource_name: (r) => resourceLink(r.entitlement) }, apiUrl("access", { who: q.get("who"), format: "csv", limit: 100000 })));
    const rows = app.querySelectorAll("#access tr[data-entitlement]");
    ans.access.forEach((r, i) => rows[i].lastChild.previousSibling.append(pathGraph(r)));  // the "path" cell
  },
  async resource(q) {
    const ans = await api("who-has", { what: q.get("what"), limit: 100000 });
    app.replaceChildren(el("h1", {}, q.get("what")), staleBanner(ans, ans.holders),
      table("holders", ans.holders, ["principal_name", "principal_type", "identity_emails", "status", "account_type", "entitlement", "direct", "via_names", "stale"],
        { principal_name: (r) => personLink(r.principal) }, apiUrl("who-has", { what: q.get("what"), format: "csv", limit: 100000 })));
  },
  async runs() {
    const ans = await api("runs", { limit: 100000 });
    app.replaceChildren(el("h1", {}, "Runs"), table("runs", ans.runs, ["run", "started", "finished", "run_status", "tenant", "instance", "status", "data_run", "resources", "grants", "error"]));
  },
  async diff(q) {
    const ans = await api("diff", { from: q.get("from"), to: q.get("to"), limit: 100000 });
    app.replaceChildren(el("h1", {}, "Changes from run " + ans.from + " to run " + ans.run), staleBanner(ans));
    for (const [f, cols] of [["resources", ["change", "key", "type", "display_name", "status"]],
      ["direct_grants", ["change", "entitlement", "principal", "principal_name", "via"]],
      ["derived_grants", ["change", "entitlement", "principal", "principal_name", "via"]],
      ["status_changes", ["key", "display_name", "from_status", "to_status"]],
      ["identity_changes", ["resource", "display_name", "from_identity", "to_identity", "change"]]])
      app.append(el("h2", {}, f.replace("_", " ")), table(f, ans[f], cols, null));
  },
  async report() {
    const ans = await api("report", { limit: 100000 });
    app.replaceChildren(el("h1", {}, "Hygiene report"), staleBanner(ans));
    for (const f of ["inactive_with_grants", "jira_without_org_account", "nonhuman_with_grants"]) {
      const rows = ans[f];
      const cols = rows.length ? Object.keys(rows[0]) : [];
      app.append(el("h2", {}, f.replaceAll("_", " ")), table(f, rows, cols, { principal_name: (r) => personLink(r.principal) }));
    }
  },
  async review() {
    const ans = await api("export", { limit: 100000 });
    app.replaceChildren(el("h1", {}, "Access review"), staleBanner(ans),
      table("access_review", ans.access_review, ["identity_name", "identity_emails", "status", "account_type", "resource_name", "slug", "direct", "via_names", "stale"],
        { identity_name: (r) => personLink(r.principal) }, apiUrl("export", { format: "csv", limit: 100000 })));
  },
};

async function route() {
  const h = location.hash.replace(/^#\/?/, "");
  const [name, qs] = h.split("?");
  const view = views[name || "search"];
  document.body.removeAttribute("data-ready");
  try {
    if (!view) throw new Error("no page '" + name + "'");
    await view(new URLSearchParams(qs || ""));
  } catch (e) {
    app.replaceChildren(el("p", { class: "error" }, String(e.message || e)));
    if (/unauthorized/.test(e.message)) {
      const f = el("form", {}, el("input", { name: "t", type: "password", "aria-label": "token" }), el("button", {}, "Use token"));
      f.addEventListener("submit", (ev) => { ev.preventDefault(); sessionStorage.setItem("connhost-token", f.t.value); route(); });
      app.append(f);
    }
  }
  document.body.setAttribute("data-ready", "1");
}

window.addEventListener("hashchange", route);
route();
