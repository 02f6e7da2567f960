// The territory tree (city > district > subdistrict > community > grid) with each venue's status.

import { SUPERVISORS, api } from "../api.js";
import { debounce, h, toast } from "../dom.js";
import { label, t } from "../i18n.js";
import { broadcastDialog } from "./commands.js";


/** red: an open incident; grey: the venue's node is offline or never seen; yellow: devices offline. */
export function venueColour(v) {
  if (v.open_incidents > 0) return "red";
  if (v.node_online !== true) return "grey";
  if (v.devices_online < v.devices) return "yellow";
  return "green";
}

function venueLabel(v) {
  if (v.node_online === null) return t("territory.never_connected");
  if (v.node_online === false) return t("common.offline");
  return v.open_incidents ? t("territory.open_incidents", { count: v.open_incidents }) : t("territory.ok");
}

export async function render(root, { me, live }) {
  const tree = h("div", { class: "tree panel" });
  const summary = h("div", { class: "counters" });
  root.append(h("h1", {}, t("territory.title")), summary, tree);
  const open = new Set(); // areas the person folded open, kept across reloads

  async function load() {
    let nodes;
    let venues;
    try {
      [nodes, venues] = await Promise.all([api("/api/territory"), api("/api/venues")]);
    } catch (e) {
      toast(e.message, true);
      return;
    }
    const colours = venues.map(venueColour);
    const count = (c) => colours.filter((x) => x === c).length;
    summary.replaceChildren(
      h("div", { class: "counter" }, h("b", {}, venues.length), t("territory.venues")),
      h("div", { class: "counter red" }, h("b", {}, count("red")), t("territory.with_incidents")),
      h("div", { class: "counter" }, h("b", {}, count("grey")), t("common.offline")),
      h("div", { class: "counter yellow" }, h("b", {}, count("yellow")), t("territory.devices_missing")));
    const children = new Map();
    for (const n of nodes) {
      if (!children.has(n.parent_id)) children.set(n.parent_id, []);
      children.get(n.parent_id).push(n);
    }
    const byGrid = new Map();
    for (const v of venues) {
      if (!byGrid.has(v.grid_id)) byGrid.set(v.grid_id, []);
      byGrid.get(v.grid_id).push(v);
    }
    const ids = new Set(nodes.map((n) => n.id));
    const roots = nodes.filter((n) => !ids.has(n.parent_id));
    tree.replaceChildren(...roots.map((n) => area(n, children, byGrid, 0)));
  }

  function area(n, children, byGrid, depth) {
    const details = h("details", { dataset: { area: n.id } },
      h("summary", {},
        h("b", {}, n.name), h("span", { class: "level" }, label("territory.level", n.level)),
        h("span", { class: "muted small" }, t("territory.area_venues", { count: n.venues })),
        n.open_incidents ? h("span", { class: "chip red", title: t("territory.open_title") }, t("territory.area_open", { count: n.open_incidents })) : null),
      // Beside the summary, not in it: a control inside <summary> is a control in a control.
      SUPERVISORS.has(me.role) && n.venues > 0
        ? h("div", { class: "area-actions" }, h("button", { class: "small quiet", type: "button",
          "aria-label": t("commands.broadcast_to", { name: n.name }),
          onclick: () => broadcastDialog({ area: n.id, name: n.name }) }, t("territory.broadcast")))
        : null,
      (children.get(n.id) || []).map((c) => area(c, children, byGrid, depth + 1)),
      (byGrid.get(n.id) || []).map(venueRow));
    details.open = depth < 2 || open.has(n.id) || n.open_incidents > 0;
    details.addEventListener("toggle", () => (details.open ? open.add(n.id) : open.delete(n.id)));
    return details;
  }

  function venueRow(v) {
    const colour = venueColour(v);
    return h("a", { class: `venue-row status-${colour}`, href: `#/venue/${v.id}`, dataset: { venue: v.id, status: colour } },
      h("span", { class: "dot" }),
      h("span", {}, v.name, h("span", { class: "muted small" }, ` · ${label("venuekind", v.kind)}`)),
      h("span", {}, venueLabel(v)),
      h("span", { class: "muted" }, t("territory.devices", { online: v.devices_online, total: v.devices })),
      h("span", { class: "muted wide" }, v.occupancy === null ? ""
        : v.capacity ? t("territory.inside_of", { count: v.occupancy, capacity: v.capacity }) : t("territory.inside", { count: v.occupancy })));
  }

  const reload = debounce(load, 500);
  for (const kind of ["incident", "presence", "resync"]) live.addEventListener(kind, reload);
  await load();
  return () => { for (const kind of ["incident", "presence", "resync"]) live.removeEventListener(kind, reload); };
}
