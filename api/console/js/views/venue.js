// A venue: its status, occupancy chart, devices with presence, recent incidents and door events.

import { SUPERVISORS, api } from "../api.js";
import { ago, barChart, clock, debounce, dot, h, severityChip, toast } from "../dom.js";
import { broadcastDialog, doorDialog } from "./commands.js";
import { venueColour } from "./territory.js";

const EVENT_NAMES = { "door.access": "badge", "door.forced": "forced open", "door.held_open": "held open", "door.state": "state" };
const EVENT_TYPES = ["door.access", "door.forced", "door.held_open"];

/** What a device last said, in a few words. */
function latestSummary(d) {
  const l = d.latest || {};
  const parts = [];
  if (l["door.state"]) {
    const s = l["door.state"];
    parts.push(`${s.open ? "open" : "closed"}, ${s.locked ? "locked" : "unlocked"}${s.mode && s.mode !== "normal" ? `, ${s.mode}` : ""}`);
  }
  if (l.occupancy) parts.push(`${l.occupancy.count} inside (${l.occupancy.zone})`);
  if (l["speaker.status"]) {
    const s = l["speaker.status"];
    parts.push(s.fault ? `fault: ${s.fault}` : `${s.playing ? "playing" : "idle"}, volume ${s.volume}`);
  }
  if (l["camera.alert"]) {
    const a = l["camera.alert"];
    parts.push(`last alert: ${a.kind} (${a.phase}, ${Math.round(a.score * 100)}%)`);
  }
  if (l["door.access"]) parts.push(`last badge: ${l["door.access"].result}`);
  return parts.join(" · ") || "–";
}

export async function render(root, { me, live }, venueId) {
  const head = h("div");
  const chartBox = h("div");
  const devices = h("tbody");
  const incidents = h("tbody");
  const doors = h("tbody");
  const withState = h("input", { type: "checkbox", onchange: () => loadEvents() });
  const bucket = h("select", { "aria-label": "bucket", onchange: () => loadChart() },
    h("option", { value: "hour" }, "last 24 hours, hourly"), h("option", { value: "day" }, "last 30 days, daily"));
  root.append(head,
    h("div", { class: "grid-2" },
      h("section", { class: "panel" }, h("div", { class: "row" }, h("h2", {}, "Occupancy"), h("span", { class: "spacer" }), bucket), chartBox),
      h("section", { class: "panel" }, h("h2", {}, "Open incidents"),
        h("table", { class: "responsive" }, incidents))),
    h("section", { class: "panel", id: "devices" }, h("h2", {}, "Devices"),
      h("table", { class: "responsive" },
        h("thead", {}, h("tr", {}, ["", "Device", "Kind", "Last seen", "Latest", ""].map((t) => h("th", {}, t)))), devices)),
    h("section", { class: "panel", id: "door-events" }, h("div", { class: "row" }, h("h2", {}, "Door events, last 24 hours"), h("span", { class: "spacer" }),
      h("label", { class: "row" }, withState, "with open/close changes")),
      h("table", { class: "responsive" },
        h("thead", {}, h("tr", {}, ["Time", "Door", "Event", "Result", "Detail"].map((t) => h("th", {}, t)))), doors)));

  let areas = null;

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
      head.replaceChildren(h("h1", {}, "Venue not found"), h("p", { class: "error" }, e.message));
      return null;
    }
    const colour = venueColour(v);
    head.replaceChildren(h("div", { class: "row" },
      h("h1", {}, h("span", { class: `status-${colour}` }, h("span", { class: "dot" })), v.name),
      h("span", { class: "muted" }, `${v.kind.replaceAll("_", " ")}${v.is_shelter ? " · shelter" : ""} · ${where(v.grid_id)}`),
      h("span", { class: "spacer" }),
      SUPERVISORS.has(me.role) ? h("button", { type: "button", onclick: () => broadcastDialog({ venue: v.id, name: v.name }) }, "Broadcast") : null),
    h("div", { class: "counters" },
      h("div", { class: "counter" }, h("b", {}, v.occupancy ?? "–"), v.capacity ? `inside, of ${v.capacity}` : "inside"),
      h("div", { class: `counter ${v.open_incidents ? "red" : ""}` }, h("b", {}, v.open_incidents), "open incidents"),
      h("div", { class: "counter" }, h("b", {}, `${v.devices_online}/${v.devices}`), "devices online"),
      h("div", { class: "counter" }, h("b", {}, v.node_online ? "online" : v.node_online === false ? "offline" : "never"), "edge node")));
    devices.replaceChildren(...v.devices_list.map((d) => h("tr", { dataset: { device: d.id } },
      h("td", {}, dot(d.online)),
      h("td", {}, d.name, h("div", { class: "muted small mono" }, d.id)),
      h("td", {}, d.kind),
      h("td", { title: clock(d.last_seen) }, ago(d.last_seen)),
      h("td", { class: "small" }, latestSummary(d)),
      h("td", {}, d.kind === "door" && SUPERVISORS.has(me.role)
        ? h("button", { class: "small", type: "button", onclick: () => doorDialog({ device: d.id, name: d.name, role: me.role }) }, "Door…")
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
      const label = ([t]) => (hourly
        ? new Date(t).toLocaleTimeString([], { hour: "numeric" })
        : new Date(t).toLocaleDateString([], { month: "short", day: "numeric" }));
      chartBox.replaceChildren(points.length ? barChart({
        label: "occupancy",
        labels: slots.map(label),
        series: [{ name: "average inside", values: slots.map(([, p]) => (p ? p.avg_count : null)) }],
        line: { name: "peak", values: slots.map(([, p]) => (p ? p.max_count : null)) },
        format: (v) => String(Math.round(v)),
      }) : h("p", { class: "empty" }, "No occupancy readings in this period."));
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
        h("td", {}, severityChip(i.severity)), h("td", {}, i.title), h("td", {}, i.status),
        h("td", { class: "muted" }, ago(i.opened_at)))));
      if (!open.length) incidents.append(h("tr", {}, h("td", { class: "empty" }, "None.")));
      doors.replaceChildren(...events.items.map((e) => h("tr", {},
        h("td", {}, clock(e.ts)), h("td", { class: "mono" }, e.device_id),
        h("td", {}, e.type === "door.forced" ? h("span", { class: "chip red" }, EVENT_NAMES[e.type]) : EVENT_NAMES[e.type] || e.type),
        h("td", {}, e.result || (e.is_open === null ? "" : e.is_open ? "open" : "closed")),
        h("td", { class: "muted small" }, [e.direction, e.reason].filter(Boolean).join(" · ")))));
      if (!events.items.length) doors.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No door events.")));
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
