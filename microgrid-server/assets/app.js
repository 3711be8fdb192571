// The month page: reads `key`, `start` and `end` from the URL (query or
// fragment), asks the API who the key belongs to, then draws the grid (or
// the prosumer) per day as a hand-written SVG chart and lists the bills.
// No framework, nothing fetched from outside the server.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";

  // The series of the chart, in drawing order. `fields` are the names the
  // daily rows may use for the value (integer Wh). Colours from the
  // Okabe-Ito palette, with dash patterns so they differ without colour.
  const SERIES = {
    operator: [
      { key: "production", label: "Production", fields: ["production_wh", "produced_wh", "production"], color: "#0072B2", dash: "" },
      { key: "consumption", label: "Consumption", fields: ["consumption_wh", "consumed_wh", "consumption"], color: "#D55E00", dash: "" },
      { key: "shared", label: "Shared", fields: ["shared_wh", "shared", "traded_wh"], color: "#009E73", dash: "7 4" },
      { key: "import", label: "Import", fields: ["import_wh", "imported_wh", "imports_wh", "import"], color: "#CC79A7", dash: "2 4" },
      { key: "export", label: "Export", fields: ["export_wh", "exported_wh", "exports_wh", "export"], color: "#E69F00", dash: "10 4 2 4" },
    ],
    prosumer: [
      { key: "production", label: "Produced", fields: ["produced_wh", "production_wh", "produced"], color: "#0072B2", dash: "" },
      { key: "consumption", label: "Consumed", fields: ["consumed_wh", "consumption_wh", "consumed"], color: "#D55E00", dash: "" },
      { key: "sold", label: "Sold (shared out)", fields: ["sold_wh", "shared_out_wh", "sold"], color: "#009E73", dash: "7 4" },
      { key: "bought", label: "Bought (shared in)", fields: ["bought_wh", "shared_in_wh", "bought"], color: "#56B4E9", dash: "3 3" },
      { key: "import", label: "Import", fields: ["imported_wh", "import_wh", "imports_wh", "imported"], color: "#CC79A7", dash: "2 4" },
      { key: "export", label: "Export", fields: ["exported_wh", "export_wh", "exports_wh", "exported"], color: "#E69F00", dash: "10 4 2 4" },
    ],
  };

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- URL --

  /** `key`, `start`, `end` from the query, overridden by the fragment. */
  function readParams() {
    const query = new URLSearchParams(window.location.search);
    const frag = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    const get = (name) => frag.get(name) || query.get(name) || "";
    const out = { key: get("key").trim(), start: get("start").trim(), end: get("end").trim() };
    if (!out.start || !out.end) {
      const last = previousMonth();
      out.start = out.start || last.start;
      out.end = out.end || last.end;
    }
    return out;
  }

  /** Moves the parameters into the fragment, so a reload does not send the key to the server's URL. */
  function keepInFragment(p) {
    const frag = new URLSearchParams();
    if (p.key) frag.set("key", p.key);
    frag.set("start", p.start);
    frag.set("end", p.end);
    const url = window.location.pathname + "#" + frag.toString();
    if (window.location.search || window.location.hash !== "#" + frag.toString()) {
      window.history.replaceState(null, "", url);
    }
  }

  /** The last full calendar month (UTC) as YYYY-MM-DD strings. */
  function previousMonth() {
    const now = new Date();
    const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
    const next = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    return { start: isoDay(first), end: isoDay(next) };
  }

  function isoDay(d) {
    return d.toISOString().slice(0, 10);
  }

  /** A date or date-time string as an RFC 3339 UTC instant for the API. */
  function instant(value) {
    return /^\d{4}-\d{2}-\d{2}$/.test(value) ? value + "T00:00:00Z" : value;
  }

  /** The UTC days of [start, end) as YYYY-MM-DD strings (at most 400). */
  function daysOf(start, end) {
    const out = [];
    const s = new Date(instant(start));
    const e = new Date(instant(end));
    if (isNaN(s) || isNaN(e)) return out;
    const d = new Date(Date.UTC(s.getUTCFullYear(), s.getUTCMonth(), s.getUTCDate()));
    while (d < e && out.length < 400) {
      out.push(isoDay(d));
      d.setUTCDate(d.getUTCDate() + 1);
    }
    return out;
  }

  /** "October 2026" for a whole calendar month, else "1 Oct 2026 – 15 Oct 2026". */
  function periodName(start, end) {
    const s = new Date(instant(start));
    const e = new Date(instant(end));
    if (isNaN(s) || isNaN(e)) return start + " – " + end;
    const month = new Intl.DateTimeFormat("en-GB", { month: "long", year: "numeric", timeZone: "UTC" });
    const day = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });
    const wholeMonth =
      s.getUTCDate() === 1 && s.getUTCHours() === 0 && s.getUTCMinutes() === 0 &&
      e.getTime() === Date.UTC(s.getUTCFullYear(), s.getUTCMonth() + 1, 1);
    if (wholeMonth) return month.format(s);
    const last = new Date(e.getTime() - 1);
    return day.format(s) + " – " + day.format(last);
  }

  // ---------------------------------------------------------------- API --

  /** An HTTP error turned into readable text. */
  class ApiError extends Error {
    constructor(status, title, detail) {
      super(title + (detail ? ": " + detail : ""));
      this.status = status;
      this.title = title;
      this.detail = detail;
    }
  }

  async function api(key, path) {
    let response;
    try {
      response = await fetch(path, {
        headers: { Authorization: "Bearer " + key, Accept: "application/json" },
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, "The server did not answer", String(e && e.message ? e.message : e));
    }
    let body = null;
    const text = await response.text();
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const title = (body && body.title) || response.statusText || "Request failed";
      let detail = (body && body.detail) || (body ? "" : text.slice(0, 300));
      if (response.status === 401) {
        detail = (detail ? detail + ". " : "") + "Ask the operator for a key and open the page with #key=<your key>, or type it above.";
      }
      throw new ApiError(response.status, response.status + " " + title, detail);
    }
    return body;
  }

  /** The rows of a list answer: an array, or the first array among the usual names. */
  function rowsOf(body) {
    if (Array.isArray(body)) return body;
    if (!body || typeof body !== "object") return [];
    for (const name of ["items", "data", "days", "bills", "rows", "results"]) {
      if (Array.isArray(body[name])) return body[name];
    }
    for (const value of Object.values(body)) {
      if (Array.isArray(value)) return value;
    }
    return [];
  }

  /** The link to the next page of a list answer, if any. */
  function nextOf(body, path) {
    if (!body || typeof body !== "object" || Array.isArray(body)) return null;
    let next = body.next ?? body.next_cursor ?? (body.links && body.links.next) ?? null;
    if (next === null || next === undefined || next === "") return null;
    next = String(next);
    if (next.startsWith("/") || next.startsWith("http")) return next;
    const url = new URL(path, window.location.origin);
    url.searchParams.set("cursor", next);
    url.searchParams.delete("offset");
    return url.pathname + url.search;
  }

  /** Every row of a paginated list (at most 100 pages). */
  async function fetchAll(key, path) {
    const rows = [];
    let first = null;
    let url = path;
    for (let page = 0; url && page < 100; page++) {
      const body = await api(key, url);
      if (first === null) first = body;
      rows.push(...rowsOf(body));
      url = nextOf(body, url);
    }
    return { rows, first };
  }

  function pick(row, fields) {
    for (const f of fields) {
      if (row[f] !== undefined && row[f] !== null) {
        const n = Number(row[f]);
        if (Number.isFinite(n)) return n;
      }
    }
    return null;
  }

  function dayOf(row) {
    const v = row.day ?? row.date ?? row.start ?? row.timeframe ?? "";
    return String(v).slice(0, 10);
  }

  // ------------------------------------------------------------ numbers --

  /** A decimal string as a BigInt scaled by 10^scale (exact, no floats). */
  function decimal(text) {
    const m = /^\s*([+-])?(\d*)(?:\.(\d*))?\s*$/.exec(String(text ?? ""));
    if (!m || (!m[2] && !m[3])) return null;
    const frac = m[3] || "";
    let v = BigInt((m[2] || "0") + frac);
    if (m[1] === "-") v = -v;
    return { v, scale: frac.length };
  }

  function rescale(d, scale) {
    return d.v * 10n ** BigInt(scale - d.scale);
  }

  function addDecimals(list) {
    const ds = list.map(decimal).filter((d) => d !== null);
    if (ds.length === 0) return null;
    const scale = Math.max(...ds.map((d) => d.scale));
    return { v: ds.reduce((acc, d) => acc + rescale(d, scale), 0n), scale };
  }

  /** A decimal rounded half away from zero to 2 places, with thousands separators. */
  function money(d) {
    if (d === null) return "–";
    let v = d.v;
    let scale = d.scale;
    if (scale < 2) {
      v = v * 10n ** BigInt(2 - scale);
      scale = 2;
    }
    const neg = v < 0n;
    if (neg) v = -v;
    const div = 10n ** BigInt(scale - 2);
    let cents = v / div;
    if ((v % div) * 2n >= div && div > 1n) cents += 1n;
    const whole = (cents / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    const frac = (cents % 100n).toString().padStart(2, "0");
    return (neg && cents !== 0n ? "−" : "") + whole + "." + frac;
  }

  function kwh(wh) {
    if (wh === null || wh === undefined) return "–";
    return (Number(wh) / 1000).toLocaleString("en-GB", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  }

  /** A round axis maximum and step for values up to `max` (Wh). */
  function niceScale(max) {
    if (!(max > 0)) return { top: 1000, step: 250 };
    const rough = max / 5;
    const pow = Math.pow(10, Math.floor(Math.log10(rough)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * pow).find((s) => s >= rough);
    return { top: Math.ceil(max / step) * step, step };
  }

  function fmtAxis(wh) {
    const k = wh / 1000;
    return k.toLocaleString("en-GB", { maximumFractionDigits: k < 10 ? 2 : 0 });
  }

  // -------------------------------------------------------------- chart --

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** Draws the series per day into #chart; `rows` are the API's daily rows. */
  function drawChart(title, days, rows, series) {
    const svg = $("chart");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const W = 960, H = 350;
    const left = 70, right = 20, top = 44, bottom = 88;
    const plotW = W - left - right, plotH = H - top - bottom;

    svg.appendChild(el("title", { id: "chart-title" }, title));
    const byDay = new Map(rows.map((r) => [dayOf(r), r]));
    const values = series.map((s) => days.map((d) => (byDay.has(d) ? pick(byDay.get(d), s.fields) : null)));
    const present = values.flat().filter((v) => v !== null);
    const totals = series.map((s, i) => s.label + " " + kwh(values[i].reduce((a, v) => a + (v || 0), 0)) + " kWh");
    svg.appendChild(el("desc", { id: "chart-desc" },
      present.length ? "Daily totals over " + days.length + " days. Period totals: " + totals.join("; ") + "." : "No readings in this period."));

    svg.appendChild(el("text", { class: "title", x: left, y: 28 }, title));
    const scale = niceScale(present.length ? Math.max(...present) : 0);
    const y = (v) => top + plotH - (v / scale.top) * plotH;
    const slot = plotW / Math.max(days.length, 1);
    const x = (i) => left + (i + 0.5) * slot;

    // Grid lines and the y axis (kWh).
    const yAxis = el("g", { class: "y-axis" });
    for (let v = 0; v <= scale.top + 1e-9; v += scale.step) {
      const g = el("g", { class: "tick" });
      g.appendChild(el("line", { class: "grid-line", x1: left, x2: W - right, y1: y(v), y2: y(v) }));
      g.appendChild(el("text", { x: left - 8, y: y(v) + 4, "text-anchor": "end" }, fmtAxis(v)));
      yAxis.appendChild(g);
    }
    yAxis.appendChild(el("text", { class: "axis-label", transform: `translate(18 ${top + plotH / 2}) rotate(-90)`, "text-anchor": "middle" }, "kWh per day"));
    svg.appendChild(yAxis);

    // The x axis: day of the month.
    const xAxis = el("g", { class: "x-axis" });
    xAxis.appendChild(el("line", { class: "axis", x1: left, x2: W - right, y1: top + plotH, y2: top + plotH }));
    const every = Math.max(1, Math.ceil(days.length / 16));
    days.forEach((d, i) => {
      if (i % every !== 0) return;
      const g = el("g", { class: "tick" });
      g.appendChild(el("line", { class: "axis", x1: x(i), x2: x(i), y1: top + plotH, y2: top + plotH + 5 }));
      g.appendChild(el("text", { x: x(i), y: top + plotH + 19, "text-anchor": "middle" }, String(Number(d.slice(8, 10)))));
      xAxis.appendChild(g);
    });
    xAxis.appendChild(el("text", { class: "axis-label", x: left + plotW / 2, y: top + plotH + 38, "text-anchor": "middle" }, "Day (UTC)"));
    svg.appendChild(xAxis);

    if (!present.length) {
      svg.appendChild(el("text", { class: "empty", x: left + plotW / 2, y: top + plotH / 2, "text-anchor": "middle" }, "No readings in this period"));
    }

    // One group per series: a line through the days with data and a point per day.
    const dayName = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", timeZone: "UTC" });
    series.forEach((s, si) => {
      const g = el("g", { class: "series", "data-series": s.key, "aria-label": s.label });
      let d = "";
      let pen = false;
      values[si].forEach((v, i) => {
        if (v === null) {
          pen = false;
          return;
        }
        d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
        pen = true;
      });
      const path = el("path", { d, stroke: s.color });
      if (s.dash) path.setAttribute("stroke-dasharray", s.dash);
      g.appendChild(path);
      values[si].forEach((v, i) => {
        if (v === null) return;
        const c = el("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.6, fill: s.color, "data-day": days[i], "data-wh": v });
        c.appendChild(el("title", {}, s.label + ", " + dayName.format(new Date(days[i] + "T00:00:00Z")) + ": " + kwh(v) + " kWh"));
        g.appendChild(c);
      });
      svg.appendChild(g);
    });

    // The legend, under the axis.
    const legend = el("g", { class: "legend" });
    // Each item as wide as its label needs (about 7.5 px a character at 13 px), spread over the width.
    const widths = series.map((s) => 46 + s.label.length * 7.5);
    const gap = Math.max(12, (plotW - widths.reduce((a, w) => a + w, 0)) / Math.max(series.length - 1, 1));
    let lx = left;
    series.forEach((s, i) => {
      if (i > 0) lx += widths[i - 1] + gap;
      const ly = H - 22;
      const line = el("line", { x1: lx, x2: lx + 30, y1: ly, y2: ly, stroke: s.color, "stroke-width": 3 });
      if (s.dash) line.setAttribute("stroke-dasharray", s.dash);
      legend.appendChild(line);
      legend.appendChild(el("circle", { cx: lx + 15, cy: ly, r: 3, fill: s.color }));
      legend.appendChild(el("text", { x: lx + 38, y: ly + 4 }, s.label));
    });
    svg.appendChild(legend);
    svg.setAttribute("data-days", String(days.length));
    svg.setAttribute("data-days-with-data", String(new Set(rows.map(dayOf)).size));
  }

  function drawDailyTable(days, rows, series) {
    const table = $("daily");
    const head = table.tHead;
    const body = table.tBodies[0];
    head.replaceChildren();
    body.replaceChildren();
    const hr = head.insertRow();
    const th = (text, cls) => {
      const c = document.createElement("th");
      c.scope = "col";
      c.textContent = text;
      if (cls) c.className = cls;
      hr.appendChild(c);
    };
    th("Day");
    series.forEach((s) => th(s.label + " (kWh)", "num"));
    const byDay = new Map(rows.map((r) => [dayOf(r), r]));
    days.forEach((d) => {
      const tr = body.insertRow();
      tr.insertCell().textContent = d;
      const row = byDay.get(d);
      series.forEach((s) => {
        const td = tr.insertCell();
        td.className = "num";
        td.textContent = row ? kwh(pick(row, s.fields)) : "–";
      });
    });
  }

  // -------------------------------------------------------------- bills --

  function drawBills(bills, currency) {
    const table = $("bills");
    const body = table.tBodies[0];
    const foot = table.tFoot;
    body.replaceChildren();
    foot.replaceChildren();
    const cur = "";
    const unit = currency ? " (" + currency + ")" : "";
    const heads = table.tHead.rows[0].cells;
    heads[5].textContent = "Total" + unit;
    heads[6].textContent = "Without sharing" + unit;
    heads[7].textContent = "Savings" + unit;
    for (const b of bills) {
      const tr = body.insertRow();
      tr.setAttribute("data-prosumer", String(b.prosumer_id ?? b.prosumer ?? ""));
      const cell = (text, cls) => {
        const td = tr.insertCell();
        td.textContent = text;
        if (cls) td.className = cls;
        return td;
      };
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = String(b.prosumer_id ?? b.prosumer ?? b.id ?? "?");
      tr.appendChild(th);
      cell(kwh(b.bought_wh), "num");
      cell(kwh(b.sold_wh), "num");
      cell(kwh(b.imported_wh), "num");
      cell(kwh(b.exported_wh), "num");
      cell(money(decimal(b.total)) + cur, "num");
      cell(money(decimal(b.baseline)) + cur, "num");
      const s = decimal(b.saving ?? b.savings);
      cell(money(s) + cur, "num " + (s && s.v > 0n ? "saving-pos" : s && s.v < 0n ? "saving-neg" : ""));
    }
    if (bills.length > 1) {
      const tr = foot.insertRow();
      const sum = (f) => money(addDecimals(bills.map(f))) + cur;
      const first = tr.insertCell();
      first.textContent = bills.length + " members";
      for (const f of ["bought_wh", "sold_wh", "imported_wh", "exported_wh"]) {
        const td = tr.insertCell();
        td.className = "num";
        td.textContent = kwh(bills.reduce((a, b) => a + Number(b[f] || 0), 0));
      }
      for (const f of [(b) => b.total, (b) => b.baseline, (b) => b.saving ?? b.savings]) {
        const td = tr.insertCell();
        td.className = "num";
        td.textContent = sum(f);
      }
    }
    $("bills-note").textContent = bills.length
      ? "Savings are what each member would have paid without the community, minus the bill" + (currency ? " (amounts in " + currency + ")." : ".")
      : "No bills in this period.";
  }

  // --------------------------------------------------------------- main --

  function showError(err) {
    const box = $("error");
    box.hidden = false;
    box.textContent = err instanceof ApiError ? err.message : "Something went wrong: " + String(err);
    if (err instanceof ApiError && err.status === 401) $("who").textContent = "Not signed in.";
    else if ($("who").textContent === "Reading your key…") $("who").textContent = "";
    document.body.setAttribute("data-state", "error");
  }

  async function load(p) {
    $("error").hidden = true;
    $("error").textContent = "";
    document.body.setAttribute("data-state", "loading");
    $("status").textContent = "Loading…";
    if (!p.key) {
      $("who").textContent = "No key.";
      throw new ApiError(401, "No key", "Open the page with #key=<your key> (and optionally &start=YYYY-MM-DD&end=YYYY-MM-DD), or type the key above.");
    }
    const range = "start=" + encodeURIComponent(instant(p.start)) + "&end=" + encodeURIComponent(instant(p.end));
    const me = await api(p.key, "/api/v1/me");
    const role = me && me.role === "operator" ? "operator" : "prosumer";
    const period = periodName(p.start, p.end);
    const days = daysOf(p.start, p.end);
    let daily, title;
    if (role === "operator") {
      $("who").textContent = "Operator: the whole community.";
      $("heading").textContent = "Microgrid: the community, " + period;
      daily = await fetchAll(p.key, "/api/v1/grid/daily?" + range);
      title = "The grid per day, " + period;
    } else {
      const id = String(me.prosumer ?? "");
      let name = "";
      try {
        const info = await api(p.key, "/api/v1/prosumers/" + encodeURIComponent(id));
        name = info && info.name ? String(info.name) : "";
      } catch (_) {
        name = "";
      }
      $("who").textContent = "Prosumer " + id + (name ? " (" + name + ")" : "") + ": your own numbers.";
      $("heading").textContent = "Microgrid: " + (name || id) + ", " + period;
      daily = await fetchAll(p.key, "/api/v1/prosumers/" + encodeURIComponent(id) + "/daily?" + range);
      title = (name || id) + " per day, " + period;
    }
    const series = SERIES[role];
    drawChart(title, days, daily.rows, series);
    drawDailyTable(days, daily.rows, series);
    $("chart-caption").textContent =
      (role === "operator"
        ? "Production, consumption, energy shared between members, import from and export to the public grid, per UTC day."
        : "What you produced and consumed, sold to and bought from other members, imported and exported, per UTC day.");

    const bills = await fetchAll(p.key, "/api/v1/bills?" + range);
    const first = bills.first && !Array.isArray(bills.first) ? bills.first : {};
    drawBills(bills.rows, first.currency || (bills.rows[0] && bills.rows[0].currency) || "");
    $("status").textContent = "Showing " + period + " (" + days.length + " days), " + bills.rows.length + " bill" + (bills.rows.length === 1 ? "" : "s") + ".";
    document.body.setAttribute("data-state", "ready");
    document.body.setAttribute("data-role", role);
  }

  function failed(e) {
    $("status").textContent = "";
    showError(e);
  }

  function start() {
    const p = readParams();
    $("f-key").value = p.key;
    $("f-start").value = p.start.slice(0, 10);
    $("f-end").value = p.end.slice(0, 10);
    keepInFragment(p);
    $("range").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const q = { key: $("f-key").value.trim(), start: $("f-start").value, end: $("f-end").value };
      keepInFragment(q);
      load(q).catch(failed);
    });
    load(p).catch(failed);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
