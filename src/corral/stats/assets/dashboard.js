/* corral dashboard: polls /stats once a second and redraws with inline SVG. No libraries.
 *
 * Times in /stats are on the master's monotonic clock; everything here is drawn as
 * "seconds ago" relative to the document's `now`, so browser and server clocks never mix.
 * Memory history per worker comes from the server (`memory_history`), so a fresh page load
 * shows the last minute at once.
 */
"use strict";

const POLL_MS = 1000;
const SPAN_S = 120;          // the charts show the last two minutes
const MEM_POINTS = 60;       // memory bars per worker row (the server keeps as many)
const SVG_NS = "http://www.w3.org/2000/svg";
let failures = 0;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG_NS, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/* ---------- formatting ---------- */
function fmtCount(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 1e9) return (n / 1e9).toFixed(2) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return String(Math.round(n));
}
function fmtRate(r) {
  if (r === null || r === undefined) return "–";
  return r >= 100 ? fmtCount(r) : r.toFixed(r >= 10 ? 1 : 2).replace(/\.?0+$/, "") || "0";
}
function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms === 0) return "0";
  if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
  if (ms >= 10) return ms.toFixed(0) + " ms";
  if (ms >= 1) return ms.toFixed(1) + " ms";
  return (ms * 1000).toFixed(0) + " µs";
}
function fmtBytes(b) {
  if (b === null || b === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i === 0 ? b.toFixed(0) : b.toFixed(b >= 100 ? 0 : 1)) + " " + units[i];
}
function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}
function setKpi(id, value, unit) {
  const node = $(id);
  node.textContent = value;
  if (unit) node.appendChild(el("small", {}, unit));
}

/* ---------- memory model ---------- */
// The server keeps each worker's history as [t, shared, private] (private = USS).
function memoryRing(w) {
  return (w.memory_history || []).map(([t, shared, priv]) => ({ t, shared, priv, rss: shared + priv }));
}
// pymalloc (--malloc-stats-s): arenas now, +mapped/−freed since the fork, the zygote's unused
// pools this worker has taken (each one written on a page it shared until then).
function fmtMalloc(m) {
  if (!m) return "–";
  const d = m.derived;
  return `${m.now.arenas_current} (+${d.arenas_allocated_since_fork}/−${d.arenas_freed_since_fork}) · ${d.inherited_unused_pools_taken}/${d.inherited_unused_pools} free pools taken`;
}

function sharedPct(w) {
  if (w.shared_ratio === null || w.shared_ratio === undefined) return null;
  return Math.round(w.shared_ratio * 100);
}

/* ---------- charts ---------- */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
function chartFrame(svg, yMax, yFmt) {
  const w = Math.max(300, svg.clientWidth || svg.getBoundingClientRect().width || 600);
  const h = Math.max(120, svg.clientHeight || 190);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.replaceChildren();
  const pad = { l: 56, r: 10, t: 10, b: 22 };
  const x = (ago) => pad.l + (1 - ago / SPAN_S) * (w - pad.l - pad.r);
  const y = (v) => pad.t + (1 - v / yMax) * (h - pad.t - pad.b);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    svg.appendChild(el("svg:line", { class: "grid", x1: pad.l, x2: w - pad.r, y1: y(v), y2: y(v) }));
    svg.appendChild(el("svg:text", { class: "axis", x: pad.l - 6, y: y(v) + 4, "text-anchor": "end" }, yFmt(v)));
  }
  for (const ago of [120, 90, 60, 30, 0]) {
    const label = ago === 0 ? "now" : `-${ago}s`;
    svg.appendChild(el("svg:text", { class: "axis", x: x(ago), y: h - 6, "text-anchor": "middle" }, label));
  }
  return { svg, x, y, w, h, pad };
}
const GAP_S = 3.5; // no sample for this long (nobody polled): lift the pen, do not interpolate
function linePath(points, f) {
  let d = "";
  let prev = null;
  for (const [ago, v] of points) {
    if (v === null || v === undefined || ago > SPAN_S) { prev = null; continue; }
    const pen = prev !== null && prev - ago <= GAP_S;
    d += `${pen ? "L" : "M"}${f.x(ago).toFixed(1)},${f.y(v).toFixed(1)}`;
    prev = ago;
  }
  return d;
}
function drawMarkers(f, markers) {
  // Recycles are rare and important: a full-height dashed line with the worker id.
  // Full GCs can be frequent: a short tick along the top edge, so they never hide the data.
  let lastLabel = { x: -Infinity, row: 0 };
  for (const m of markers.slice().sort((a, b) => b.ago - a.ago)) {
    if (m.ago > SPAN_S) continue;
    const x = f.x(m.ago);
    const gc = m.kind === "gc";
    const attrs = gc
      ? { class: "m-gc", x1: x, x2: x, y1: f.pad.t - 4, y2: f.pad.t + 6 }
      : { class: "m-retire", x1: x, x2: x, y1: f.pad.t, y2: f.h - f.pad.b };
    const line = el("svg:line", attrs);
    line.appendChild(el("svg:title", {}, `${m.kind} · worker ${m.worker ?? "–"} · ${m.detail}`));
    f.svg.appendChild(line);
    if (!gc && m.worker !== null) {
      const row = x - lastLabel.x < 22 ? lastLabel.row + 1 : 0; // stack labels that would collide
      lastLabel = { x, row };
      f.svg.appendChild(el("svg:text", { class: "m-label", x: x + 3, y: f.pad.t + 18 + 11 * row }, `w${m.worker}`));
    }
  }
}
function drawEmpty(f, text) {
  f.svg.appendChild(el("svg:text", { class: "empty", x: (f.w + f.pad.l) / 2, y: f.h / 2, "text-anchor": "middle" }, text));
}
function drawThroughput(doc, markers) {
  const pts = doc.series.map((p) => ({ ago: doc.now - p.t, ...p }));
  const maxV = Math.max(1, ...pts.map((p) => Math.max(p.rps, p.errors_4xx_per_s + p.errors_5xx_per_s)));
  const f = chartFrame($("chart-rps"), niceMax(maxV * 1.1), fmtRate);
  const barW = Math.max(1.5, ((f.w - f.pad.l - f.pad.r) / SPAN_S) * 0.8);
  for (const p of pts) {
    if (p.ago > SPAN_S) continue;
    const e4 = p.errors_4xx_per_s, e5 = p.errors_5xx_per_s;
    if (e5 > 0) f.svg.appendChild(el("svg:rect", { class: "b-5xx", x: f.x(p.ago) - barW / 2, y: f.y(e5), width: barW, height: f.y(0) - f.y(e5) }));
    if (e4 > 0) f.svg.appendChild(el("svg:rect", { class: "b-4xx", x: f.x(p.ago) - barW / 2, y: f.y(e4 + e5), width: barW, height: f.y(e5) - f.y(e4 + e5) }));
  }
  const line = linePath(pts.map((p) => [p.ago, p.rps]), f);
  if (line) {
    for (const seg of line.split("M").filter(Boolean)) {
      const xs = seg.split("L").map((xy) => xy.split(",")[0]);
      const area = `M${seg}L${xs[xs.length - 1]},${f.y(0)}L${xs[0]},${f.y(0)}Z`;
      f.svg.appendChild(el("svg:path", { class: "a-rps", d: area }));
    }
    f.svg.appendChild(el("svg:path", { class: "l-rps", d: line }));
  } else {
    drawEmpty(f, "collecting samples…");
  }
  drawMarkers(f, markers);
}
function drawLatency(doc, markers) {
  const pts = doc.series.map((p) => ({ ago: doc.now - p.t, ...p }));
  const maxV = Math.max(0.1, ...pts.map((p) => p.p99_ms || 0));
  const f = chartFrame($("chart-latency"), niceMax(maxV * 1.1), fmtMs);
  const p50 = linePath(pts.map((p) => [p.ago, p.p50_ms]), f);
  const p99 = linePath(pts.map((p) => [p.ago, p.p99_ms]), f);
  if (!p50 && !p99) drawEmpty(f, "no requests yet");
  f.svg.appendChild(el("svg:path", { class: "l-p99", d: p99 }));
  f.svg.appendChild(el("svg:path", { class: "l-p50", d: p50 }));
  drawMarkers(f, markers);
}

/* ---------- memory rows ---------- */
function memoryScale(workers) {
  let max = 1;
  for (const w of workers) for (const s of memoryRing(w)) max = Math.max(max, s.rss);
  return max;
}
function memoryBars(ring, scale) {
  const w = 600, h = 44;
  const svg = el("svg:svg", { class: "mem-bars", viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none" });
  const slot = w / MEM_POINTS;
  const offset = MEM_POINTS - ring.length;
  ring.forEach((s, i) => {
    const x = (offset + i) * slot + 0.5;
    const hs = (s.shared / scale) * (h - 4);
    const hp = (s.priv / scale) * (h - 4);
    const title = `rss ${fmtBytes(s.rss)} · shared ${fmtBytes(s.shared)} · private ${fmtBytes(s.priv)}`;
    const sr = el("svg:rect", { class: "s", x, y: h - hs, width: slot - 1, height: hs });
    const pr = el("svg:rect", { class: "p", x, y: h - hs - hp, width: slot - 1, height: hp });
    sr.appendChild(el("svg:title", {}, title));
    pr.appendChild(el("svg:title", {}, title));
    svg.append(sr, pr);
  });
  return svg;
}
function drawMemory(doc) {
  const box = $("memory");
  box.replaceChildren();
  const withMem = doc.workers.filter((w) => memoryRing(w).length);
  if (!withMem.length) {
    box.appendChild(el("div", { class: "mem-absent" }, "No memory figures reported yet (the master samples /proc/PID/smaps_rollup on Linux)."));
    return;
  }
  const scale = memoryScale(withMem);
  for (const w of doc.workers) {
    const row = el("div", { class: "mem-row" });
    const name = el("div", { class: "mem-name" }, `worker ${w.id}`);
    name.appendChild(el("small", {}, `pid ${w.pid} · gen ${w.generation}`));
    row.appendChild(name);
    const ring = memoryRing(w);
    if (!ring.length) {
      row.appendChild(el("div", { class: "mem-absent" }, "no sample yet"));
      row.appendChild(el("div"));
    } else {
      row.appendChild(memoryBars(ring, scale));
      const last = ring[ring.length - 1];
      const figs = el("div", { class: "mem-figs" });
      const pct = sharedPct(w);
      figs.append("rss ", el("b", {}, fmtBytes(last.rss)), " · private ", el("b", {}, fmtBytes(last.priv)));
      if (pct !== null) figs.append(" · ", el("b", {}, `${pct}%`), " shared");
      row.appendChild(figs);
    }
    box.appendChild(row);
  }
}

/* ---------- table and events ---------- */
function cell(text, cls) {
  return el("td", cls ? { class: cls } : {}, text);
}
function drawWorkers(doc) {
  const body = document.querySelector("#workers tbody");
  body.replaceChildren();
  for (const w of doc.workers) {
    const tr = el("tr", { "data-pid": w.pid });
    tr.appendChild(cell(String(w.id)));
    tr.appendChild(cell(String(w.pid), "mono"));
    const st = el("td");
    st.appendChild(el("span", { class: `state state-${w.state}` }, w.state));
    tr.appendChild(st);
    tr.appendChild(cell(fmtDuration(w.uptime_s), "num"));
    tr.appendChild(cell(fmtCount(w.requests), "num"));
    tr.appendChild(cell(String(w.in_flight), "num"));
    tr.appendChild(cell(fmtRate(w.rps), "num"));
    tr.appendChild(cell(fmtMs(w.p99_ms), "num"));
    const m = w.memory || {};
    tr.appendChild(cell(fmtBytes(m.rss), "num"));
    tr.appendChild(cell(fmtBytes(m.uss), "num"));
    tr.appendChild(cell(fmtBytes(m.pss), "num"));
    const pct = sharedPct(w);
    const sh = el("td", { class: "num" });
    if (pct !== null) {
      const bar = el("span", { class: "bar-inline" });
      bar.appendChild(el("i", { style: `width:${pct}%` }));
      sh.appendChild(bar);
      sh.appendChild(document.createTextNode(`${pct}%`));
    } else {
      sh.textContent = "–";
    }
    tr.appendChild(sh);
    tr.appendChild(cell(String(w.gc.collections[2]), "num"));
    tr.appendChild(cell(fmtMalloc(w.malloc), "num"));
    const age = w.current && w.current.age_s >= 0.001 ? ` · ${fmtMs(w.current.age_s * 1000)}` : "";
    const cur = w.current ? `${w.current.request}${age}` : "";
    tr.appendChild(cell(cur, "req"));
    body.appendChild(tr);
  }
  if (!doc.workers.length) {
    const tr = el("tr");
    tr.appendChild(el("td", { colspan: 15, class: "mem-absent" }, "no live workers"));
    body.appendChild(tr);
  }
}
function drawEvents(doc) {
  // Full GCs are ticks on the charts; the list keeps the lifecycle (spawn, retire, reload...).
  const list = $("events");
  list.replaceChildren();
  const gcs = doc.events.filter((e) => e.kind === "gc" && doc.now - e.t <= SPAN_S).length;
  $("gc-count").textContent = gcs ? `${gcs} full GC${gcs === 1 ? "" : "s"} in the last ${SPAN_S / 60} min` : "";
  const recent = doc.events.filter((e) => e.kind !== "gc").slice(-30).reverse();
  list.classList.toggle("long", recent.length > 8);
  if (!recent.length) list.appendChild(el("li", { class: "empty" }, "no worker has been started or retired yet"));
  for (const e of recent) {
    const li = el("li");
    const ago = doc.now - e.t;
    li.appendChild(el("span", { class: "ago" }, ago < 1 ? "now" : `-${fmtDuration(ago)}`));
    li.appendChild(el("span", { class: `kind kind-${e.kind}` }, e.kind));
    li.appendChild(el("span", {}, e.worker === null ? "" : `worker ${e.worker}`));
    li.appendChild(el("span", {}, e.detail));
    list.appendChild(li);
  }
}

/* ---------- header and KPIs ---------- */
function drawHeader(doc) {
  const t = doc.totals;
  $("uptime").textContent = fmtDuration(doc.uptime_s);
  $("nworkers").textContent = String(doc.workers.length);
  $("total-requests").textContent = fmtCount(t.requests);
  setKpi("kpi-rps", fmtRate(t.rps));
  setKpi("kpi-p50", fmtMs(t.p50_ms));
  setKpi("kpi-p99", fmtMs(t.p99_ms));
  setKpi("kpi-4xx", fmtRate(t.errors_4xx_per_s));
  setKpi("kpi-5xx", fmtRate(t.errors_5xx_per_s));
  $("kpi-4xx").classList.toggle("nonzero", t.errors_4xx_per_s > 0);
  $("kpi-5xx").classList.toggle("nonzero", t.errors_5xx_per_s > 0);
  setKpi("kpi-inflight", String(t.in_flight));
  setKpi("kpi-websockets", String(t.websockets ?? 0));
  const recycles = Object.values(t.recycles).reduce((a, b) => a + b, 0);
  setKpi("kpi-restarts", `${t.restarts} · ${recycles}`);
  const priv = doc.workers.map((w) => memoryRing(w).pop()).filter(Boolean);
  setKpi("kpi-private", priv.length ? fmtBytes(priv.reduce((a, s) => a + s.priv, 0)) : "–");
}
function setStatus(kind, text) {
  const s = $("status");
  s.className = `pill pill-${kind}`;
  s.textContent = text;
}

function render(doc) {
  const markers = doc.events.filter((e) => e.kind === "retire" || e.kind === "gc")
    .map((e) => ({ ago: doc.now - e.t, kind: e.kind, worker: e.worker, detail: e.detail }));
  drawHeader(doc);
  drawThroughput(doc, markers);
  drawLatency(doc, markers);
  drawMemory(doc);
  drawWorkers(doc);
  drawEvents(doc);
}

async function poll() {
  try {
    const resp = await fetch("/stats", { cache: "no-store" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    render(await resp.json());
    failures = 0;
    setStatus("ok", "live");
  } catch (err) {
    failures += 1;
    setStatus(failures > 2 ? "bad" : "wait", failures > 2 ? "unreachable" : "retrying…");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
