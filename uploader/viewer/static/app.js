// comet-journal viewer: runs table, run page, compare view. Every user string is inserted as
// text (never as markup); logged html lives in a sandboxed iframe served with a sandbox CSP.
"use strict";

const LIVE_POLL_MS = 1000;
let pollTimer = null;
let charts = [];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function getJSON(url) {
  const r = await fetch(url, {credentials: "same-origin"});
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

const fmtTime = ms => ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "";
function fmtDuration(ms) {
  if (ms === null || ms === undefined || ms < 0) return "";
  const s = Math.round(ms / 1000), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}
const fmtValue = v => typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
const runUrl = key => `/api/run/${encodeURIComponent(key)}`;

function stopAll() {
  if (pollTimer) clearInterval(pollTimer);
  pollTimer = null;
  charts.forEach(c => c.destroy());
  charts = [];
}

// ---- runs table ---------------------------------------------------------------------------
async function runsView(main) {
  const selected = new Set();
  const filter = el("input", {type: "search", placeholder: "filter runs", id: "filter"});
  const compare = el("button", {id: "compare", onclick: () => {
    if (selected.size) location.hash = "#/compare/" + [...selected].map(encodeURIComponent).join(",");
  }}, "Compare selected");
  const tbody = el("tbody");
  const table = el("table", {id: "runs"}, el("thead", {}, el("tr", {}, ["", "name", "project",
    "status", "start", "duration", "last step", "tags", "upload"].map(h => el("th", {}, h)))), tbody);
  main.append(el("div", {class: "controls"}, filter, compare), table);
  let runs = [];
  function render() {
    const q = filter.value.toLowerCase();
    tbody.replaceChildren(...runs.filter(r => !q || JSON.stringify([r.name, r.key, r.project,
      r.workspace, r.tags, r.status]).toLowerCase().includes(q)).map(r => {
      const box = el("input", {type: "checkbox", "data-select": r.key, onchange: e => {
        e.target.checked ? selected.add(r.key) : selected.delete(r.key); }});
      box.checked = selected.has(r.key);
      const end = r.end_ms || r.last_ms;
      return el("tr", {}, el("td", {}, box),
        el("td", {}, el("a", {href: "#/run/" + encodeURIComponent(r.key), "data-run": r.key},
          r.name || r.key)),
        el("td", {}, `${r.workspace || ""}/${r.project || ""}`),
        el("td", {class: "status-" + r.status, "data-status": r.status}, r.status),
        el("td", {}, fmtTime(r.start_ms)), el("td", {}, fmtDuration(end - r.start_ms)),
        el("td", {}, r.last_step ?? ""),
        el("td", {}, r.tags.map(t => el("span", {class: "tag"}, t))),
        el("td", {}, r.uploads.length ? r.uploads.map(u => `${u.server}: ${u.pending} pending`)
          .join("; ") : el("span", {class: "muted"}, "not uploaded")));
    }));
  }
  filter.addEventListener("input", render);
  async function load() { runs = (await getJSON("/api/runs")).runs; render(); }
  await load();
  pollTimer = setInterval(() => load().catch(() => {}), 2000);
}

// ---- charts -------------------------------------------------------------------------------
function smooth(ys, weight) {
  if (!weight) return ys;
  let last = null;
  return ys.map(y => (last = last === null ? y : last * weight + (1 - weight) * y));
}

class Chart {
  // sources: [{key, name, context, system, label}] drawn in one chart (compare: one per run)
  constructor(box, sources, opts) {
    this.box = box; this.sources = sources; this.opts = opts; this.range = null;
    this.plot = null; this.points = -1;
    this.body = el("div");
    const pan = dir => () => this.pan(dir);
    box.append(el("h4", {}, sources[0].title, el("span", {class: "pan"},
      el("button", {onclick: pan(-1), title: "pan left"}, "◀"),
      el("button", {onclick: pan(1), title: "pan right"}, "▶"),
      el("button", {onclick: () => { this.range = null; this.load(); }, title: "reset zoom"}, "⟲"))),
      this.body);
    this.body.addEventListener("wheel", e => this.wheel(e), {passive: false});
  }
  seriesUrl(s) {
    const width = Math.max(100, Math.floor(this.box.clientWidth || 400));
    const p = new URLSearchParams({name: s.name, x: this.opts.x, width});
    if (s.context !== null && s.context !== undefined) p.set("context", s.context);
    if (s.system) p.set("system", "1");
    if (this.range) { p.set("from", this.range[0]); p.set("to", this.range[1]); }
    return `${runUrl(s.key)}/series?${p}`;
  }
  async load() {
    const data = await Promise.all(this.sources.map(s => getJSON(this.seriesUrl(s))));
    const first = data[0];
    this.box.dataset.points = first.points;
    this.box.dataset.lastStep = first.last_step ?? "";
    this.box.dataset.sent = data.reduce((n, d) => n + d.x.length, 0);
    this.box.dataset.inRange = first.in_range;  // points of the journal in the visible range
    const tables = data.map(d => [d.x, smooth(d.y, this.opts.smoothing)]);
    const aligned = tables.length === 1 ? tables[0] : uPlot.join(tables);
    this.draw(aligned);
  }
  draw(aligned) {
    if (this.plot) { this.plot.setData(aligned, !this.range); if (this.range) this.plot.setScale("x", {min: this.range[0], max: this.range[1]}); return; }
    const width = Math.max(200, this.box.clientWidth - 10);
    const colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
    const opts = {
      width, height: 200, legend: {show: this.sources.length > 1},
      scales: {x: {time: this.opts.x === "time"}, y: {distr: this.opts.log ? 3 : 1}},
      series: [{}, ...this.sources.map((s, i) => ({label: s.label, stroke: colors[i % colors.length], width: 1,
        spanGaps: true}))],
      cursor: {drag: {x: true, y: false}},
      hooks: {
        setSelect: [u => {
          if (u.select.width < 3) return;
          const lo = u.posToVal(u.select.left, "x"), hi = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({width: 0, height: 0}, false);
          this.range = [lo, hi]; this.load();
        }],
        draw: [() => {
          if (!this.box.dataset.painted) {
            this.box.dataset.painted = "1";
            if (window.firstPaintMs === undefined) window.firstPaintMs = performance.now();
          }
        }],
      },
    };
    opts.cursor.drag.setScale = false;
    this.plot = new uPlot(opts, aligned, this.body);
  }
  pan(dir) {
    const u = this.plot; if (!u) return;
    const lo = u.scales.x.min, hi = u.scales.x.max, d = (hi - lo) / 2 * dir;
    this.range = [lo + d, hi + d]; this.load();
  }
  wheel(e) {
    const u = this.plot; if (!u) return;
    e.preventDefault();
    const lo = u.scales.x.min, hi = u.scales.x.max;
    const at = u.posToVal(e.offsetX, "x"), f = e.deltaY < 0 ? 0.75 : 1 / 0.75;
    this.range = [at - (at - lo) * f, at + (hi - at) * f]; this.load();
  }
  destroy() { if (this.plot) this.plot.destroy(); }
}

function chartBox(s) {
  const box = el("div", {class: "chart", "data-metric": s.name, "data-context": s.context ?? null});
  return box;
}

function chartGrid(list, keys, opts, system) {
  const grid = el("div", {class: "charts"});
  for (const m of list) {
    const box = chartBox(m);
    grid.append(box);
    const title = m.name + (m.context ? ` [${m.context}]` : "");
    const sources = keys.map(k => ({key: k, name: m.name, context: m.context, system, title,
      label: keys.length > 1 ? k.slice(0, 8) : m.name}));
    const chart = new Chart(box, sources, opts);
    chart.points = m.points;
    charts.push(chart);
  }
  return grid;
}

function chartControls(opts, rerender) {
  const x = el("select", {id: "x-axis", onchange: e => { opts.x = e.target.value; rerender(); }},
    ["step", "epoch", "time"].map(k => el("option", {value: k}, k)));
  x.value = opts.x;
  const sm = el("input", {type: "range", min: 0, max: 0.99, step: 0.01, value: opts.smoothing,
    id: "smoothing", onchange: e => { opts.smoothing = +e.target.value; rerender(); }});
  const log = el("input", {type: "checkbox", id: "log-scale", onchange: e => { opts.log = e.target.checked; rerender(); }});
  log.checked = opts.log;
  return el("div", {class: "controls"}, el("label", {}, "x: ", x), el("label", {}, "smoothing ", sm),
    el("label", {}, log, " log scale"));
}

// ---- run page -----------------------------------------------------------------------------
function kvTable(obj, attrs) {
  return el("table", attrs || {}, el("tbody", {}, Object.entries(obj || {}).map(([k, v]) =>
    el("tr", {}, el("th", {}, k), el("td", {}, fmtValue(v))))));
}

const ANSI = /\x1b\[([0-9;]*)m/g;
function ansiLine(text, stderr) {
  text = text.replace(/\r?\n$/, "");
  const line = el("div", {class: stderr ? "stderr" : ""});
  let cls = [], last = 0, m;
  const push = s => { if (s) line.append(cls.length ? el("span", {class: cls.join(" ")}, s) : s); };
  ANSI.lastIndex = 0;
  while ((m = ANSI.exec(text))) {
    push(text.slice(last, m.index)); last = ANSI.lastIndex;
    for (const c of m[1].split(";").map(Number)) {
      if (c === 0) cls = [];
      else if (c === 1) cls.push("ansi-b");
      else if (c >= 30 && c <= 37) cls = cls.filter(x => !/^ansi-3/.test(x)).concat("ansi-" + c);
      else if (c >= 90 && c <= 97) cls = cls.filter(x => !/^ansi-3/.test(x)).concat("ansi-" + (c - 60));
    }
  }
  push(text.slice(last));
  return line;
}

function blobUrl(key, blob, name, download) {
  const p = new URLSearchParams({name: name || blob.$blob});
  if (download) p.set("download", "1");
  return `${runUrl(key)}/blob/${blob.$blob}?${p}`;
}

async function textPre(key, blob, name) {
  const pre = el("pre", {class: "text"});
  if (blob && blob.$blob) {
    const r = await fetch(blobUrl(key, blob, name || "text.txt"));
    pre.textContent = await r.text();
  } else if (typeof blob === "string") pre.textContent = blob;
  return pre;
}

function section(title, ...content) { return el("section", {}, el("h3", {}, title), ...content); }

const IMAGE = /\.(png|jpe?g|gif|webp|bmp)$/i;
const TEXT = /\.(txt|log|csv|json|ya?ml|py|md|cfg|ini|toml)$/i;

async function assetRow(key, a) {
  if (!a.blob) return el("tr", {}, el("td", {}, a.name), el("td", {}, "(remote)"));
  const preview = IMAGE.test(a.name) ? el("img", {class: "preview", src: blobUrl(key, a.blob, a.name), alt: a.name})
    : TEXT.test(a.name) ? await textPre(key, a.blob, a.name) : "";
  return el("tr", {}, el("td", {}, a.name), el("td", {}, `${a.blob.size} bytes`),
    el("td", {}, el("a", {href: blobUrl(key, a.blob, a.name, true), download: a.name}, "download")),
    el("td", {}, preview));
}

async function itemSections(key, run) {
  const items = run.items, out = [];
  if (run.has_html) out.push(section("HTML", el("iframe", {class: "html", sandbox: "",
    src: `${runUrl(key)}/html`, "data-html": "", title: "logged html (sandboxed)"})));
  if (items.text_samples.length) out.push(section("Text samples", ...await Promise.all(
    items.text_samples.map(async t => el("div", {"data-text-sample": t.step ?? ""},
      el("div", {class: "muted"}, `step ${t.step ?? ""} ${t.context || ""}`),
      await textPre(key, t.blob, "sample.txt"))))));
  if (items.assets.length) {
    const assetRows = await Promise.all(items.assets.map(a => assetRow(key, a)));
    out.push(section("Assets", el("table", {"data-assets": ""}, el("tbody", {}, assetRows))));
  }
  if (items.git_metadata) out.push(section("Git", kvTable(items.git_metadata, {"data-git": ""})));
  if (items.upload_git_patch) out.push(section("Git patch", await textPre(key, items.upload_git_patch, "patch.diff")));
  if (items.set_code) out.push(section("Code", await textPre(key, items.set_code, "code.py")));
  if (items.log_graph) out.push(section("Model graph", await textPre(key, items.log_graph, "graph.txt")));
  if (items.system_details) out.push(section("System details", kvTable(items.system_details, {"data-system-details": ""})));
  return out;
}

function outputPane(key) {
  const pane = el("div", {class: "output", "data-output": ""});
  const search = el("input", {type: "search", placeholder: "search output", id: "output-search"});
  let lines = [], cursor = {};
  function render() {
    const q = search.value.toLowerCase();
    pane.replaceChildren(...lines.filter(l => !q || l.text.toLowerCase().includes(q))
      .map(l => ansiLine(l.text, l.stderr)));
  }
  search.addEventListener("input", render);
  async function poll() {
    const answer = await getJSON(`${runUrl(key)}/output?after=${encodeURIComponent(JSON.stringify(cursor))}`);
    const got = answer.lines;
    cursor = answer.cursor;
    if (!got.length) return;
    lines = lines.concat(got).slice(-20000);
    render();
  }
  return {node: section("Output", search, pane), poll};
}

async function runView(main, key) {
  const run = await getJSON(runUrl(key));
  const s = run.summary;
  document.getElementById("crumbs").textContent = " / " + (s.name || key);
  const opts = {x: "step", smoothing: 0, log: false};
  const metricsBox = el("div"), systemBox = el("div");
  const known = new Map();
  function render() {
    stopCharts();
    metricsBox.replaceChildren(chartGrid(run.metrics, [key], opts, false));
    systemBox.replaceChildren(chartGrid(run.system, [key], opts, true));
    charts.forEach(c => c.load());
    [...run.metrics, ...run.system].forEach(m => known.set(m.name + "\0" + m.context, m.points));
  }
  const output = outputPane(key);
  main.append(
    el("h2", {"data-run-page": key}, s.name || key, " ", el("span", {class: "status-" + s.status, id: "run-status"}, s.status)),
    el("div", {class: "muted"}, `${s.workspace || ""}/${s.project || ""} · key ${key} · started ${fmtTime(s.start_ms)}`),
    el("div", {id: "tags"}, s.tags.map(t => el("span", {class: "tag"}, t))),
    chartControls(opts, render), section("Metrics", metricsBox), section("System", systemBox),
    section("Parameters", kvTable(run.params, {"data-params": ""})),
    section("Others", kvTable(run.others, {"data-others": ""})), output.node);
  render();  // charts first: the items below may fetch blobs
  main.append(...await itemSections(key, run));
  await output.poll();
  pollTimer = setInterval(async () => {
    try {
      const live = await getJSON(`${runUrl(key)}/live`);
      document.getElementById("run-status").textContent = live.summary.status;
      const fresh = [...live.metrics, ...live.system];
      if (fresh.some(m => !known.has(m.name + "\0" + m.context))) {
        run.metrics = live.metrics; run.system = live.system; render();
      } else {
        for (const c of charts) {
          const src = c.sources[0], m = fresh.find(f => f.name === src.name && f.context === src.context);
          if (m && m.points !== c.points) { c.points = m.points; c.load(); }
        }
      }
      await output.poll();
    } catch (e) { /* a busy journal: try again at the next tick */ }
  }, LIVE_POLL_MS);
}

function stopCharts() { charts.forEach(c => c.destroy()); charts = []; }

// ---- compare ------------------------------------------------------------------------------
async function compareView(main, keys) {
  const runs = await Promise.all(keys.map(k => getJSON(runUrl(k))));
  document.getElementById("crumbs").textContent = " / compare";
  const names = new Map();
  runs.forEach(r => r.metrics.forEach(m => names.set(m.name + "\0" + (m.context ?? ""), m)));
  const opts = {x: "step", smoothing: 0, log: false};
  const box = el("div");
  const render = () => { stopCharts(); box.replaceChildren(chartGrid([...names.values()], keys, opts, false)); charts.forEach(c => c.load()); };
  const paramNames = [...new Set(runs.flatMap(r => Object.keys(r.params)))].sort();
  const diff = el("table", {"data-params": "", "data-compare": ""}, el("thead", {}, el("tr", {}, el("th", {}, "parameter"),
    runs.map(r => el("th", {}, r.summary.name || r.summary.key)))), el("tbody", {}, paramNames.map(p => {
    const values = runs.map(r => p in r.params ? fmtValue(r.params[p]) : "");
    const differs = new Set(values).size > 1;
    return el("tr", {class: differs ? "differs" : "", "data-differs": differs ? "1" : "0"}, el("th", {}, p), values.map(v => el("td", {}, v)));
  })));
  main.append(el("h2", {}, `Compare ${keys.length} runs`), chartControls(opts, render), section("Metrics", box),
    section("Parameters (differences highlighted)", diff));
  render();
}

// ---- router -------------------------------------------------------------------------------
async function route() {
  stopAll();
  const main = document.getElementById("main");
  main.replaceChildren();
  document.getElementById("crumbs").textContent = "";
  const hash = location.hash.slice(1) || "/";
  try {
    if (hash.startsWith("/run/")) await runView(main, decodeURIComponent(hash.slice(5)));
    else if (hash.startsWith("/compare/")) await compareView(main, hash.slice(9).split(",").map(decodeURIComponent));
    else await runsView(main);
  } catch (e) {
    main.append(el("p", {class: "error"}, String(e.message || e)));
  }
}
window.addEventListener("hashchange", route);
route();
