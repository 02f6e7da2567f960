// The control room's wall (大屏): one screen, no interaction, refreshes itself.
//
// Opened once as wall.html#token=TOKEN (a view-only wall token, `gridwatch wall token`), the
// token moves to this browser's localStorage and leaves the address bar; it is sent only in
// the Authorization header, never in a URL. #lang=en switches to English, #area=ID shows an
// area under the token's. The summary is polled every refresh_s seconds (the API keeps it that
// long); when answers stop coming the wall says how old what it shows is, and keeps trying.

import { h, s } from "./dom.js";
import { ago, clock, locale, number, percent, setLocale, setZone, t, title } from "./i18n.js";

const TOKEN = "gridwatch.wall.token";
const AREA = "gridwatch.wall.area";
const LANG = "gridwatch.wall.lang";
const STALE_AFTER = 3; // refresh periods without an answer before the wall says so
const RELOAD_AFTER = 24 * 3600 * 1000; // a wall runs for months: take up a new version daily
const LOADED = Date.now();

const $ = (id) => document.getElementById(id);

/** What the address's fragment says (#token=..&lang=..&area=..), then the fragment cleared. */
function readFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("token")) localStorage.setItem(TOKEN, params.get("token"));
  if (params.get("lang")) localStorage.setItem(LANG, params.get("lang"));
  if (params.get("area")) localStorage.setItem(AREA, params.get("area"));
  if (location.hash) history.replaceState(null, "", location.pathname);
}

const state = {
  token: null, area: null, home: null, tz: "Asia/Shanghai", refresh: 5, lastOk: 0, mapVersion: null,
  map: null, summary: null, seen: null, failure: null, drawn: null,
};

async function call(path) {
  const response = await fetch(path, {
    headers: { Authorization: `Bearer ${state.token}`, "Accept-Language": locale() },
    cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
  });
  if (!response.ok) {
    const error = new Error(`HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

// ---- the map ----

const rad = Math.PI / 180;
const mercator = ([lon, lat]) => [lon * rad, -Math.log(Math.tan(Math.PI / 4 + (lat * rad) / 2))];

function rings(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return geometry.coordinates;
  if (geometry.type === "MultiPolygon") return geometry.coordinates.flat();
  return [];
}

/** A projection fitted to the box: Web Mercator (so tiles line up), centred, 4% margin. */
/** [west, east, north, south] of projected points (a loop: real boundaries have many). */
function extent(points) {
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const [x, y] of points) {
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  return [x0, x1, y0, y1];
}

function fit(points, width, height) {
  const [x0, x1, y0, y1] = extent(points);
  const scale = 0.92 * Math.min(width / Math.max(x1 - x0, 1e-9), height / Math.max(y1 - y0, 1e-9));
  const dx = (width - (x1 - x0) * scale) / 2 - x0 * scale;
  const dy = (height - (y1 - y0) * scale) / 2 - y0 * scale;
  const project = (lonlat) => { const [x, y] = mercator(lonlat); return [x * scale + dx, y * scale + dy]; };
  return { project, scale, dx, dy };
}

function tiles(template, view, width, height) {
  // Tiles of the configured server (on this origin: the console's CSP allows no other) at the
  // zoom whose 256 px tiles match the map's scale.
  const z = Math.max(0, Math.min(19, Math.round(Math.log2((view.scale * 2 * Math.PI) / 256))));
  const n = 2 ** z;
  const size = (2 * Math.PI * view.scale) / n;
  const tileOf = (px, py) => [Math.floor(((px - view.dx) / view.scale + Math.PI) / (2 * Math.PI) * n),
    Math.floor(((py - view.dy) / view.scale + Math.PI) / (2 * Math.PI) * n)];
  const [tx0, ty0] = tileOf(0, 0);
  const [tx1, ty1] = tileOf(width, height);
  const images = [];
  for (let x = Math.max(0, tx0); x <= Math.min(n - 1, tx1); x++) {
    for (let y = Math.max(0, ty0); y <= Math.min(n - 1, ty1); y++) {
      const href = template.replace("{z}", z).replace("{x}", x).replace("{y}", y);
      images.push(s("image", { href, x: (x / n) * 2 * Math.PI * view.scale - Math.PI * view.scale + view.dx,
        y: (y / n) * 2 * Math.PI * view.scale - Math.PI * view.scale + view.dy, width: size, height: size, opacity: 0.55 }));
    }
  }
  return s("g", { class: "tiles" }, ...images);
}

function drawMap() {
  const box = $("map");
  const width = box.clientWidth;
  const height = box.clientHeight;
  const summary = state.summary;
  if (!summary || !state.map || !width || !height) return;
  // Redrawn only when something on it changed (a redraw restarts the red venues' pulse).
  const drawn = JSON.stringify([width, height, state.mapVersion, summary.tiles, summary.emergencies.map((e) => e.id),
    summary.venues.map((v) => [v.id, v.name, v.status, v.lat, v.lon])]);
  if (drawn === state.drawn && box.firstChild) return;
  state.drawn = drawn;
  const areas = state.map.areas;
  const points = [];
  for (const a of areas) for (const ring of rings(a.boundary)) points.push(...ring.map(mercator));
  const located = summary.venues.filter((v) => v.lat !== null && v.lon !== null);
  for (const v of located) points.push(mercator([v.lon, v.lat]));
  if (!points.length) { box.replaceChildren(h("div", { class: "empty" }, t("wall.map.none"))); return; }
  const view = fit(points, width, height);
  const path = (geometry) => rings(geometry).map((ring) =>
    `M${ring.map((p) => view.project(p).map((c) => c.toFixed(1)).join(",")).join("L")}Z`).join("");
  // An area is in emergency when it or an area above it is (the wall's own area included:
  // an emergency above the wall's area names no area of this map, and covers all of it).
  const declared = new Set(summary.emergencies.map((e) => e.territory_id));
  const known = new Map(areas.map((a) => [a.id, a]));
  const everywhere = summary.emergencies.some((e) => !known.has(e.territory_id));
  const inEmergency = (a) => {
    for (let x = a; x; x = known.get(x.parent_id)) if (declared.has(x.id)) return true;
    return everywhere;
  };
  const maxDepth = Math.max(...areas.map((a) => a.depth));
  const parents = new Set(areas.map((a) => a.parent_id));
  const leaf = (a) => !parents.has(a.id);
  // Deepest areas first (filled), then each level up drawn over them, the area's own outline last.
  const ordered = [...areas].filter((a) => a.boundary).sort((a, b) => b.depth - a.depth);
  const shapes = ordered.map((a) => s("path", {
    d: path(a.boundary), "data-area": a.id,
    class: `area depth-${Math.min(a.depth, 2)}${leaf(a) ? " leaf" : ""}${leaf(a) && inEmergency(a) ? " emergency" : ""}`,
  }, s("title", {}, a.name)));
  const named = areas.filter((a) => a.boundary && a.depth === (maxDepth === 0 ? 0 : 1));
  const names = named.map((a) => {
    const [x0, x1, top] = extent(rings(a.boundary)[0].map((p) => view.project(p)));
    return s("text", { class: "area-name", x: ((x0 + x1) / 2).toFixed(0), y: (top + 40).toFixed(0) }, a.name);
  });
  const radius = 13;
  const venues = located.map((v) => {
    const [x, y] = view.project([v.lon, v.lat]);
    return s("g", { "data-venue": v.id, "data-status": v.status },
      v.status === "red" ? s("circle", { class: "pulse", cx: x.toFixed(1), cy: y.toFixed(1), r: radius }) : null,
      s("circle", { class: `venue ${v.status}`, cx: x.toFixed(1), cy: y.toFixed(1), r: radius },
        s("title", {}, v.name)));
  });
  // Red venues last, so nothing hides them.
  venues.sort((a, b) => (a.dataset.status === "red") - (b.dataset.status === "red"));
  box.replaceChildren(s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": t("wall.map.label", { count: located.length }) },
    summary.tiles ? tiles(summary.tiles, view, width, height) : null,
    s("g", {}, ...shapes), s("g", {}, ...names), s("g", {}, ...venues)));
}

// ---- the panels ----

function renderHeader(summary) {
  document.title = t("wall.doc_title", { area: summary.area.name });
  $("title").textContent = t("wall.title", { area: summary.area.name });
  $("subtitle").textContent = t("wall.subtitle", { venues: number(summary.venues.length) });
  const banner = $("emergency");
  const on = summary.emergencies;
  banner.hidden = on.length === 0;
  if (on.length) {
    const first = on[0];
    banner.replaceChildren(h("span", { class: "sign", "aria-hidden": "true" }),
      h("span", { class: "what" }, t("wall.emergency", { area: first.area_name, reason: first.reason })),
      h("span", { class: "since" }, t("wall.emergency.since", { time: clock(first.started_at, state.tz) })),
      ...(on.length > 1 ? [h("span", { class: "more" }, t("wall.emergency.more", { count: on.length - 1 }))] : []));
  }
}

function renderOpen(summary) {
  $("open").replaceChildren(...["red", "yellow", "green"].map((c) =>
    h("div", { class: `severity ${c}`, "data-severity": c },
      h("div", { class: "figure" }, number(summary.open_incidents[c] || 0)),
      h("div", { class: "label" }, t(`wall.severity.${c}`)))));
}

function kpi(label, value, extra = "") {
  return h("div", { class: `kpi ${extra}` }, h("div", { class: "value" }, value), h("div", { class: "label" }, label));
}

function renderToday(summary) {
  const d = summary.today;
  $("today").replaceChildren(
    h("div", { class: "kpi wide" }, h("div", { class: "value figure" }, number(d.incidents)),
      h("div", {}, h("div", { class: "label" }, t("wall.today.incidents")),
        h("div", { class: `label${d.incidents_red ? " red" : ""}` }, t("wall.today.red", { count: d.incidents_red })))),
    kpi(t("wall.today.tasks"), number(d.tasks)),
    kpi(t("wall.today.closed"), number(d.closed)),
    kpi(t("wall.today.acceptance"), percent(d.acceptance_rate)),
    kpi(t("wall.today.on_time"), percent(d.on_time_closure_rate)));
}

function renderOnline(summary) {
  const o = summary.online;
  const below = (r) => (r.below_target ? " below" : "");
  const total = o.total;
  const rows = o.areas.slice(0, 6).map((a) => h("div", { class: `online-row${below(a)}`, "data-area": a.id },
    h("span", { class: "name" }, a.name),
    h("span", { class: "bar" }, bar(a.rate), target(o.target)),
    h("span", { class: "rate" }, percent(a.rate, 1))));
  $("online").replaceChildren(
    h("div", { class: `online-total${below(total)}` },
      h("span", { class: "figure" }, percent(total.rate, 1)),
      h("span", {}, h("div", { class: "label" }, t("wall.online.target", { target: percent(o.target) })),
        h("div", { class: "label" }, t("wall.online.devices", { online: number(total.online), devices: number(total.devices) })))),
    ...rows);
}

function bar(rate) {
  const fill = h("span", { class: "fill" });
  fill.style.width = `${Math.max(0, Math.min(1, rate ?? 0)) * 100}%`; // CSSOM: allowed by the CSP
  return fill;
}

function target(rate) {
  const mark = h("span", { class: "target" });
  mark.style.left = `calc(${rate * 100}% - 2px)`;
  return mark;
}

function renderDue(summary) {
  const due = summary.tasks_due;
  $("h-due").replaceChildren(t("wall.due"), h("span", { class: "counts" },
    h("span", { class: "late" }, t("wall.due.overdue", { count: due.overdue })),
    h("span", { class: "near" }, t("wall.due.near", { count: due.near }))));
  if (!due.items.length) {
    $("due").replaceChildren(h("li", { class: "empty" }, t("wall.due.none")));
    return;
  }
  $("due").replaceChildren(...due.items.map((k) => h("li", { class: k.overdue ? "overdue" : "near", "data-task": k.id },
    h("span", { class: `dot ${k.severity}` }),
    h("span", { class: "what" }, title(k), h("span", { class: "venue" }, k.venue_name)),
    h("span", { class: "when" }, k.overdue || !k.deadline_at ? t("wall.due.late") : ago(k.deadline_at)))));
}

function renderTicker(summary) {
  const fresh = state.seen !== null;
  const seen = new Set(summary.ticker.map((i) => i.id));
  if (!summary.ticker.length) {
    $("ticker").replaceChildren(h("li", { class: "empty" }, t("wall.ticker.none")));
  } else {
    $("ticker").replaceChildren(...summary.ticker.slice(0, 4).map((i) => h("li", {
      class: `${i.severity}${i.status === "resolved" ? " resolved" : ""}${fresh && !state.seen.has(i.id) ? " new" : ""}`,
      "data-incident": i.id,
    },
      h("span", { class: "time" }, clock(i.opened_at, state.tz)),
      h("span", { class: `dot ${i.severity}` }),
      h("span", { class: "what" }, title(i)),
      h("span", { class: "where" }, i.venue_name))));
  }
  state.seen = seen;
}

function renderOccupancy(summary) {
  const venues = summary.occupancy.slice(0, 3);
  if (!venues.length) {
    $("occupancy").replaceChildren(h("div", { class: "empty" }, t("wall.occupancy.none")));
    return;
  }
  $("occupancy").replaceChildren(...venues.map((v) => h("div", { class: "occ-row", "data-venue": v.venue_id },
    h("span", { class: "name" }, v.name), spark(v.hours, v.capacity),
    h("span", { class: "now" }, v.now === null ? number(null) : t("wall.occupancy.now", { count: number(v.now) })))));
}

function spark(hours, capacity) {
  const w = 220;
  const ht = 48;
  const top = Math.max(1, capacity || 0, ...hours.map((x) => x.max_count));
  const since = Date.now() - 24 * 3600 * 1000;
  const xy = hours.map((x) => [((new Date(x.bucket).getTime() - since) / (24 * 3600 * 1000)) * w, ht - (x.avg_count / top) * (ht - 4) - 2]);
  if (!xy.length) return s("svg", { viewBox: `0 0 ${w} ${ht}` });
  const line = xy.map((p, i) => `${i ? "L" : "M"}${Math.max(0, p[0]).toFixed(1)},${p[1].toFixed(1)}`).join("");
  return s("svg", { viewBox: `0 0 ${w} ${ht}`, "aria-hidden": "true" },
    s("path", { class: "spark-area", d: `${line}L${Math.max(0, xy[xy.length - 1][0]).toFixed(1)},${ht}L${Math.max(0, xy[0][0]).toFixed(1)},${ht}Z` }),
    s("path", { class: "spark", d: line }));
}

function renderLegend() {
  $("legend").replaceChildren(...["red", "yellow", "grey", "green"].map((c) =>
    h("span", {}, h("span", { class: `dot ${c}` }), t(`wall.legend.${c}`))));
}

function headings() {
  for (const [id, key] of [["h-open", "wall.open"], ["h-today", "wall.today"], ["h-map", "wall.map"],
    ["h-online", "wall.online"], ["h-due", "wall.due"], ["h-ticker", "wall.ticker"], ["h-occupancy", "wall.occupancy"]]) {
    $(id).textContent = t(key);
  }
  renderLegend();
}

function render(summary) {
  state.summary = summary;
  state.tz = summary.timezone;
  setZone(summary.timezone);
  renderHeader(summary);
  renderOpen(summary);
  renderToday(summary);
  renderOnline(summary);
  renderDue(summary);
  renderTicker(summary);
  renderOccupancy(summary);
  drawMap();
}

// ---- staleness and the clock ----

function tick() {
  $("clock").textContent = clock(new Date(), state.tz);
  $("date").textContent = new Intl.DateTimeFormat(locale(), { timeZone: state.tz, dateStyle: "full" }).format(new Date());
  const late = state.lastOk && Date.now() - state.lastOk > STALE_AFTER * state.refresh * 1000;
  let message = null;
  if (!state.token) message = t("wall.no_token");
  else if (state.failure === 401) message = t("wall.revoked");
  else if (late) message = t("wall.stale", { age: ago(state.lastOk) });
  else if (!state.lastOk && state.failure !== null) message = t("wall.unreachable");
  const stale = $("stale");
  stale.hidden = message === null;
  if (message !== null) stale.textContent = message;
  $("wall").dataset.state = message === null ? "live" : "stale";
}

async function poll() {
  let wait = state.refresh;
  try {
    const summary = await call(`/api/wall/${encodeURIComponent(state.area)}`);
    state.refresh = summary.refresh_s || state.refresh;
    if (summary.map_version !== state.mapVersion) {
      state.map = await call(`/api/wall/${encodeURIComponent(state.area)}/map`);
      state.mapVersion = summary.map_version;
    }
    state.lastOk = Date.now();
    state.failure = null;
    render(summary);
    wait = state.refresh;
    if (Date.now() - LOADED > RELOAD_AFTER) location.reload(); // the token stays in storage
  } catch (e) {
    state.failure = e.status || 0;
    if (e.status === 404 && state.area !== state.home) {
      // The area named in the fragment is not the token's to show: show the token's own.
      localStorage.removeItem(AREA);
      state.area = state.home;
      state.mapVersion = null;
    }
    wait = e.status === 401 ? 30 : Math.min(30, state.refresh * 2);
  }
  tick();
  setTimeout(poll, wait * 1000);
}

/** Which area this wall shows: the token's (or one under it named in the fragment). */
async function connect() {
  try {
    const who = await call("/api/wall");
    state.home = who.area_id;
    state.area = localStorage.getItem(AREA) || who.area_id;
  } catch (e) {
    state.failure = e.status || 0;
    tick();
    setTimeout(connect, 30_000); // the network may come back, or the token be replaced
    return;
  }
  await poll();
}

async function start() {
  readFragment();
  await setLocale(localStorage.getItem(LANG) || "zh-CN");
  headings();
  state.token = localStorage.getItem(TOKEN);
  setInterval(tick, 1000);
  if (!state.token) {
    tick();
    return;
  }
  $("title").textContent = t("wall.loading");
  window.addEventListener("resize", drawMap);
  await connect();
}

start();
