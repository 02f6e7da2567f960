// A venue: its status, occupancy chart, devices with presence, recent incidents and door events.

import { SUPERVISORS, api } from "../api.js";
import { barChart, debounce, dot, h, severityChip, toast } from "../dom.js";
import { ago, clock, dateText, label, percent, stamp, t, title } from "../i18n.js";
import { broadcastDialog, doorDialog } from "./commands.js";
import { venueColour } from "./territory.js";

// Door events by type: the catalogue key of each (venue.event.*).
const EVENT_KEYS = { "door.access": "badge", "door.forced": "forced", "door.held_open": "held_open", "door.state": "state" };
const EVENT_TYPES = ["door.access", "door.forced", "door.held_open"];

/** What a device last said, in a few words. */
function latestSummary(d) {
  const l = d.latest || {};
  const parts = [];
  const health = l["device.health"];
  if (health && health.condition !== "ok") {
    // What the driver finds of the device itself (unreachable, refused our account, …), first.
    parts.push(h("span", { class: "error", title: health.detail || "" },
      t("venue.health", { condition: label("venue.condition", health.condition) })));
  }
  if (l["door.state"]) {
    const s = l["door.state"];
    parts.push([t(s.open ? "venue.open" : "venue.closed"), t(s.locked ? "venue.locked" : "venue.unlocked"),
      s.mode && s.mode !== "normal" ? label("venue.mode", s.mode) : null].filter(Boolean).join(t("common.list_separator")));
  }
  if (l.occupancy) parts.push(t("venue.inside_zone", { count: l.occupancy.count, zone: l.occupancy.zone }));
  if (l["speaker.status"]) {
    const s = l["speaker.status"];
    parts.push(s.fault ? t("venue.fault", { fault: label("venue.speaker_fault", s.fault) })
      : t(s.playing ? "venue.playing" : "venue.idle", { volume: s.volume }));
  }
  if (l["camera.alert"]) {
    const a = l["camera.alert"];
    parts.push(t("venue.last_alert", { kind: label("venue.alert", a.kind), phase: label("venue.phase", a.phase), score: percent(a.score) }));
  }
  if (l["door.access"]) parts.push(t("venue.last_badge", { result: label("venue.result", l["door.access"].result) }));
  if (!parts.length) return "–";
  const out = [];
  parts.forEach((p, i) => out.push(...(i ? [" · ", p] : [p])));
  if (health && health.condition !== "ok" && health.detail) out.push(h("div", { class: "muted small" }, health.detail));
  return out;
}

export async function render(root, { me, live }, venueId) {
  const head = h("div");
  const chartBox = h("div");
  const devices = h("tbody");
  const incidents = h("tbody");
  const doors = h("tbody");
  const withState = h("input", { type: "checkbox", onchange: () => loadEvents() });
  const bucket = h("select", { "aria-label": t("venue.bucket"), onchange: () => loadChart() },
    h("option", { value: "hour" }, t("venue.hourly")), h("option", { value: "day" }, t("venue.daily")));
  const heads = (keys) => h("thead", {}, h("tr", {}, keys.map((k) => h("th", {}, k ? t(k) : ""))));
  root.append(head,
    h("div", { class: "grid-2" },
      h("section", { class: "panel" }, h("div", { class: "row" }, h("h2", {}, t("venue.occupancy")), h("span", { class: "spacer" }), bucket), chartBox),
      h("section", { class: "panel" }, h("h2", {}, t("venue.open_incidents")),
        h("table", { class: "responsive" }, incidents))),
    h("section", { class: "panel", id: "devices" }, h("h2", {}, t("venue.devices")),
      h("table", { class: "responsive" },
        heads(["", "venue.device", "venue.kind", "venue.last_seen", "venue.latest", ""]), devices)),
    h("section", { class: "panel", id: "door-events" }, h("div", { class: "row" }, h("h2", {}, t("venue.door_events")), h("span", { class: "spacer" }),
      h("label", { class: "row" }, withState, t("venue.with_state"))),
      h("table", { class: "responsive" },
        heads(["venue.time", "venue.door", "venue.event", "venue.result", "venue.detail"]), doors)));

  let areas = null;
  let zone; // the venue's time zone, once loaded
  let deviceNames = new Map();

  /** "Qingyuan Community 0 › Grid 1": where the venue is, from its community down. */
  function where(gridId) {
    const byId = new Map(areas.map((a) => [a.id, a]));
    const grid = byId.get(gridId);
    const community = grid && byId.get(grid.parent_id);
    return [community?.name, grid?.name || gridId].filter(Boolean).join(" › ");
  }

  async function loadVenue() {
    let v;
    try {
      [v, areas] = await Promise.all([api(`/api/venues/${venueId}`), areas || api("/api/territory")]);
    } catch (e) {
      head.replaceChildren(h("h1", {}, t("venue.not_found")), h("p", { class: "error" }, e.message));
      return null;
    }
    const colour = venueColour(v);
    zone = v.timezone || undefined;
    deviceNames = new Map(v.devices_list.map((d) => [d.id, d.name]));
    head.replaceChildren(h("div", { class: "row" },
      h("h1", {}, h("span", { class: `status-${colour}` }, h("span", { class: "dot" })), v.name),
      h("span", { class: "muted" }, [label("venuekind", v.kind), v.is_shelter ? t("venue.shelter") : null, where(v.grid_id)]
        .filter(Boolean).join(" · ")),
      h("span", { class: "spacer" }),
      SUPERVISORS.has(me.role) ? h("button", { type: "button", onclick: () => broadcastDialog({ venue: v.id, name: v.name }) }, t("venue.broadcast")) : null),
    h("div", { class: "counters" },
      h("div", { class: "counter" }, h("b", {}, v.occupancy ?? "–"), v.capacity ? t("venue.inside_of", { capacity: v.capacity }) : t("venue.inside")),
      h("div", { class: `counter ${v.open_incidents ? "red" : ""}` }, h("b", {}, v.open_incidents), t("venue.open_count")),
      h("div", { class: "counter" }, h("b", {}, `${v.devices_online}/${v.devices}`), t("venue.devices_online")),
      h("div", { class: "counter" }, h("b", {}, t(v.node_online ? "common.online" : v.node_online === false ? "common.offline" : "venue.never")), t("venue.edge_node"))));
    devices.replaceChildren(...v.devices_list.map((d) => h("tr", { dataset: { device: d.id } },
      h("td", {}, dot(d.online)),
      h("td", {}, d.name, h("div", { class: "muted small" }, h("code", {}, d.id))),
      h("td", {}, label("device", d.kind)),
      h("td", { title: stamp(d.last_seen, zone) }, ago(d.last_seen)),
      h("td", { class: "small" }, latestSummary(d)),
      h("td", {}, d.kind === "door" && SUPERVISORS.has(me.role)
        ? h("button", { class: "small", type: "button", onclick: () => doorDialog({ device: d.id, name: d.name, role: me.role }) }, t("venue.door_button"))
        : null))));
    return v;
  }

  async function loadChart() {
    const hourly = bucket.value === "hour";
    const step = hourly ? 3600_000 : 86400_000;
    const until = new Date();
    const since = new Date(Math.floor(until.getTime() / step) * step - (hourly ? 23 : 29) * step);
    try {
      const points = await api(`/api/venues/${venueId}/occupancy`,
        { params: { bucket: bucket.value, since: since.toISOString(), until: until.toISOString() } });
      // Every bucket of the period on the axis, empty ones included, so gaps show as gaps.
      const found = new Map(points.map((p) => [new Date(p.bucket).getTime(), p]));
      const slots = [];
      for (let t = since.getTime(); t <= until.getTime(); t += step) slots.push([t, found.get(t) || null]);
      const axis = hourly ? { hour: "numeric" } : { month: "short", day: "numeric" };
      chartBox.replaceChildren(points.length ? barChart({
        label: t("venue.occupancy"),
        labels: slots.map(([at]) => dateText(at, axis, zone)),
        series: [{ name: t("venue.average_inside"), values: slots.map(([, p]) => (p ? p.avg_count : null)) }],
        line: { name: t("venue.peak"), values: slots.map(([, p]) => (p ? p.max_count : null)) },
        format: (v) => String(Math.round(v)),
      }) : h("p", { class: "empty" }, t("venue.no_readings")));
    } catch (e) {
      chartBox.replaceChildren(h("p", { class: "error" }, e.message));
    }
  }

  async function loadEvents() {
    try {
      const [recent, events] = await Promise.all([
        api("/api/incidents", { params: { venue: venueId, limit: 100 } }),
        api(`/api/venues/${venueId}/door-events`, { params: { limit: 50, type: withState.checked ? undefined : EVENT_TYPES } }),
      ]);
      const open = recent.items.filter((i) => i.status !== "resolved");
      incidents.replaceChildren(...open.map((i) => h("tr", {},
        h("td", {}, severityChip(i.severity)),
        h("td", {}, h("a", { href: `#/incident/${i.id}`, class: "plain" }, title(i))), h("td", {}, label("status", i.status)),
        h("td", { class: "muted", title: stamp(i.opened_at, zone) }, ago(i.opened_at)))));
      if (!open.length) incidents.append(h("tr", {}, h("td", { class: "empty" }, t("common.none"))));
      const eventName = (type) => (EVENT_KEYS[type] ? t(`venue.event.${EVENT_KEYS[type]}`) : type);
      doors.replaceChildren(...events.items.map((e) => h("tr", {},
        h("td", { title: stamp(e.ts, zone) }, clock(e.ts, zone)),
        h("td", {}, deviceNames.get(e.device_id) || h("code", {}, e.device_id)),
        h("td", {}, e.type === "door.forced" ? h("span", { class: "chip red" }, eventName(e.type)) : eventName(e.type)),
        h("td", {}, e.result ? label("venue.result", e.result) : e.is_open === null ? "" : t(e.is_open ? "venue.open" : "venue.closed")),
        h("td", { class: "muted small" }, [e.direction ? label("venue.direction", e.direction) : null, e.reason ? label("venue.reason", e.reason) : null]
          .filter(Boolean).join(" · ")))));
      if (!events.items.length) doors.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, t("venue.no_door_events"))));
    } catch (e) {
      toast(e.message, true);
    }
  }

  if (!(await loadVenue())) return null;
  await Promise.all([loadChart(), loadEvents()]);
  const reload = debounce(() => { loadVenue(); loadEvents(); }, 400);
  const mine = (e) => { if (!e.detail.venue_id || e.detail.venue_id === venueId) reload(); };
  for (const kind of ["incident", "presence"]) live.addEventListener(kind, mine);
  live.addEventListener("resync", reload);
  const ticker = setInterval(() => { loadVenue(); loadEvents(); }, 15_000); // readings have no live event
  return () => {
    for (const kind of ["incident", "presence"]) live.removeEventListener(kind, mine);
    live.removeEventListener("resync", reload);
    clearInterval(ticker);
  };
}
