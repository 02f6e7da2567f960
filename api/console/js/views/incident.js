// One incident, the page a notification about it opens: what it is, and who was notified.

import { api, venueNames } from "../api.js";
import { fill, h, severityChip } from "../dom.js";
import { ago, clock } from "../i18n.js";
import { deliveriesTable } from "./deliveries.js";

export async function render(root, ctx, id) {
  const head = h("div", { id: "incident" });
  const deliveries = deliveriesTable("incidents", id);
  root.append(head, h("section", { class: "panel" }, h("h2", {}, "Notified"), deliveries));

  let loaded = false;
  async function load() {
    let i;
    let names;
    try {
      [i, names] = await Promise.all([api(`/api/incidents/${id}`), venueNames()]);
    } catch (e) {
      fill(head, h("p", { class: "error" }, e.status === 404 ? `Incident #${id} is not there, or not in your area.` : e.message));
      return;
    }
    fill(head,
      h("h1", {}, severityChip(i.severity), " ", i.title),
      h("p", { class: "muted" }, `#${i.id} · ${i.rule.replaceAll("_", " ")} · ${i.status} · opened `,
        h("span", { title: clock(i.opened_at) }, ago(i.opened_at)), " · ",
        i.venue_id ? h("a", { href: `#/venue/${i.venue_id}` }, names.get(i.venue_id) || i.venue_id) : "platform"));
    if (loaded) deliveries.load();
    loaded = true;
  }

  const onIncident = (e) => { if (String(e.detail.id) === String(id)) load(); };
  ctx.live.addEventListener("incident", onIncident);
  await load();
  return () => ctx.live.removeEventListener("incident", onIncident);
}
