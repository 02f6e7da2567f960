// Small DOM helpers and SVG charts. Text always goes in as text, never as HTML; the words come
// from the catalogues (i18n.js).

import { duration, label as codeLabel, stamp, t } from "./i18n.js";

/** An element: h("a", {href: "#/x", class: "y", onclick: f}, "text", child, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  el.append(...nodes(children));
  return el;
}

/** Replaces an element's content with children (nested arrays, null and false allowed). */
export function fill(el, ...children) {
  el.replaceChildren(...nodes(children));
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function nodes(children) {
  return children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
}

const SVG = "http://www.w3.org/2000/svg";

/** An SVG element: s("circle", {cx: 1, cy: 2, r: 3}, child, ...). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  el.append(...nodes(children));
  return el;
}

export function chip(text, colour) {
  return h("span", { class: `chip ${colour}` }, text);
}

export function severityChip(severity) {
  return h("span", { class: `chip ${severity}`, dataset: { severity } }, codeLabel("severity", severity));
}

export function dot(online) {
  return h("span", { class: `dot ${online === true ? "on" : online === false ? "off" : ""}`,
    title: t(online === true ? "common.online" : online === false ? "common.offline" : "common.never_seen") });
}

// ---- time (formatting itself lives in i18n.js) ----

/** "due in 4 min" or "overdue 2 min", with the overdue class when late; tz: the venue's. */
export function due(deadline, tz) {
  if (!deadline) return h("span", { class: "muted" }, t("common.no_deadline"));
  const left = (new Date(deadline).getTime() - Date.now()) / 1000;
  return left >= 0
    ? h("span", { title: stamp(deadline, tz) }, t("common.due_in", { time: duration(left) }))
    : h("span", { class: "overdue", title: stamp(deadline, tz) }, t("common.overdue", { time: duration(left) }));
}

// ---- behaviour ----

/** Calls `f` once, `ms` after the last of a burst of calls. */
export function debounce(f, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => f(...args), ms);
  };
}

let toastTimer = null;
export function toast(message, bad = false) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = bad ? "toast bad" : "toast";
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), bad ? 6000 : 3000);
}

/** Runs an action from a button: disabled while it runs, the error shown if it fails. */
export async function act(button, f) {
  button.disabled = true;
  try {
    return await f();
  } catch (e) {
    toast(e.message, true);
    return undefined;
  } finally {
    button.disabled = false;
  }
}

// ---- charts ----

const W = 640;
const H = 220;
const PAD = { left: 56, right: 12, top: 12, bottom: 36 };
// Round steps for a time axis (seconds): 1-2-5 where the clock allows, then its own units.
export const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
  43200, 86400, 172800, 432000, 604800];

/**
 * Axis ticks on round values: a step of 1, 2 or 5 times a power of ten (whole numbers only
 * when `integer`; from `steps` when given, e.g. a time axis), at most about `count` intervals,
 * from 0 to the first tick at or above `max`. Returns {top, ticks}.
 */
export function niceTicks(max, { count = 5, integer = false, steps = null } = {}) {
  const v = Number.isFinite(max) && max > 0 ? max : 0;
  let step;
  if (steps) {
    step = steps.find((x) => x * count >= v) ?? steps[steps.length - 1] * Math.ceil(v / (steps[steps.length - 1] * count));
  } else if (v === 0) {
    step = 1;
  } else {
    const raw = v / count;
    const p = 10 ** Math.floor(Math.log10(raw));
    step = [1, 2, 5, 10].map((m) => m * p).find((x) => x >= raw * (1 - 1e-9));
  }
  if (integer) step = Math.max(1, Math.round(step));
  const n = Math.max(1, Math.ceil(v / step - 1e-9));
  const ticks = Array.from({ length: n + 1 }, (_, k) => Number((k * step).toPrecision(12)));
  return { top: ticks[ticks.length - 1], ticks };
}

/**
 * Bars (one or more series side by side per label) with an optional line over them.
 * series: [{name, values, cls}], line: {name, values} or null, format: y-axis labels;
 * axis: "count" (whole numbers), "rate" (0..1, never past 100%), "time" (seconds) or "number".
 */
export function barChart({ labels, series, line = null, format = String, label = "", axis = "number", empty = null }) {
  const all = series.flatMap((x) => x.values).concat(line ? line.values : []);
  if (all.every((v) => v === null || v === undefined)) return h("p", { class: "empty" }, empty ?? t("common.no_data"));
  const max = Math.max(0, ...all.filter((v) => v !== null && v !== undefined));
  const { top, ticks } = niceTicks(axis === "rate" ? Math.min(1, max) || 1 : max,
    { integer: axis === "count", steps: axis === "time" ? TIME_STEPS : null });
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const y = (v) => PAD.top + plotH - (Math.min(v, top) / top) * plotH;
  const slot = plotW / Math.max(1, labels.length);
  const barW = Math.min(56, Math.max(2, (slot * 0.8) / series.length));
  const step = ticks.length > 1 ? ticks[1] : top;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label,
    dataset: { axis, step } });
  for (const v of ticks) {
    svg.append(s("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }),
      s("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", dataset: { tick: v } }, format(v)));
  }
  const every = Math.ceil(labels.length / 8);
  labels.forEach((name, i) => {
    const x0 = PAD.left + i * slot + (slot - barW * series.length) / 2;
    series.forEach((ser, j) => {
      const v = ser.values[i];
      if (v === null || v === undefined) return;
      svg.append(s("rect", { class: `bar ${ser.cls || ""}`, x: x0 + j * barW, y: y(v), width: barW - 1,
        height: Math.max(0, y(0) - y(v)) }, s("title", {}, `${name} · ${ser.name}: ${format(v)}`)));
    });
    if (i % every === 0) {
      svg.append(s("text", { x: PAD.left + i * slot + slot / 2, y: H - PAD.bottom + 16, "text-anchor": "middle" }, name));
    }
  });
  if (line) {
    const pts = line.values.map((v, i) => (v === null ? null : [PAD.left + i * slot + slot / 2, y(v), v, labels[i]]))
      .filter(Boolean);
    if (pts.length > 1) svg.append(s("polyline", { class: "line", points: pts.map(([x, yy]) => `${x},${yy}`).join(" ") }));
    for (const [x, yy, v, name] of pts) {
      svg.append(s("circle", { class: "point", cx: x, cy: yy, r: 3 }, s("title", {}, `${name} · ${line.name}: ${format(v)}`)));
    }
  }
  const keys = series.map((x) => [x.name, `k-${x.cls || "bar"}`]).concat(line ? [[line.name, "k-line"]] : []);
  const legend = h("div", { class: "legend" }, keys.map(([n, k]) => h("span", {}, h("i", { class: k, "aria-hidden": "true" }), n)));
  return h("figure", { class: "figure" }, svg, legend);
}

/**
 * A small modal form asking for one value: a note (a textarea, by default) or whatever `input`
 * is given (a select, say). Resolves to the value (trimmed; "" when not required and left
 * empty), or to null when cancelled.
 */
export function ask(title, { label = t("common.note"), required = false, placeholder = "", confirm = t("common.ok"), input = null } = {}) {
  return new Promise((resolve) => {
    const field = input || h("textarea", { name: "text", required, placeholder });
    const dialog = h("dialog", { class: "ask" },
      h("form", { method: "dialog" },
        h("h1", {}, title),
        h("label", {}, label), field,
        h("div", { class: "row" }, h("span", { class: "spacer" }),
          h("button", { type: "button", class: "quiet", onclick: () => dialog.close("") }, t("common.cancel")),
          h("button", { class: "primary", value: "ok" }, confirm))));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "ok" ? field.value.trim() : null);
    });
    document.body.append(dialog);
    dialog.showModal();
    field.focus();
  });
}
