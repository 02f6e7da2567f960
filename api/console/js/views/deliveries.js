// Who was told about an incident or a task, on which channel, and how it went
// (GET /api/v1/incidents/{id}/deliveries, /api/v1/tasks/{id}/deliveries).

import { api } from "../api.js";
import { fill, h } from "../dom.js";
import { ago, label, stamp, t } from "../i18n.js";

/** A channel's name (deliveries.channel.*). */
export function channelName(channel) {
  return label("deliveries.channel", channel);
}
// A pending one may be waiting for a retry (attempts > 0) or for its first try; "digested": sent
// inside a digest with others.
const STATE_COLOUR = { sent: "green", pending: "yellow", failed: "red", cancelled: "grey", digested: "grey" };

function when(ts) {
  return ts ? h("span", { title: stamp(ts) }, ago(ts)) : "–";
}

function row(d) {
  const who = d.person_name || d.person_id || d.person || "–";
  const state = d.state || "–";
  // data-label names the column where the table is stacked (phones, cards).
  return h("tr", { dataset: { delivery: d.id, state, channel: d.channel } },
    h("td", { "data-label": t("deliveries.who") }, who),
    h("td", { "data-label": t("deliveries.channel") }, channelName(d.channel)),
    h("td", { "data-label": t("deliveries.state") }, h("span", { class: `chip ${STATE_COLOUR[state] || "grey"}` }, label("deliveries.state", state))),
    h("td", { "data-label": t("deliveries.attempts") }, String(d.attempts ?? 0)),
    h("td", { "data-label": t("deliveries.last_error"), class: "small" }, d.last_error ? h("code", {}, d.last_error) : "–"),
    h("td", { "data-label": t("deliveries.queued") }, when(d.created_at)),
    h("td", { "data-label": t(d.state === "pending" ? "deliveries.next_try" : "deliveries.done") }, d.state === "pending" ? when(d.next_at)
      : when(d.sent_at || d.tried_at || d.updated_at)));
}

/** The deliveries of `what` ("incidents" or "tasks") `id`, as a table that reloads itself. */
export function deliveriesTable(what, id) {
  const box = h("div", { class: "deliveries", dataset: { deliveries: `${what}/${id}` } });
  const load = async () => {
    let items;
    try {
      const answer = await api(`/api/v1/${what}/${id}/deliveries`);
      items = Array.isArray(answer) ? answer : answer.items;
    } catch (e) {
      fill(box, h("p", { class: "muted small" }, t("deliveries.cannot_show", { reason: e.message })));
      return;
    }
    fill(box, items.length
      ? h("table", { class: "responsive" },
        h("thead", {}, h("tr", {}, ["who", "channel", "state", "attempts", "last_error", "queued", "sent_next"]
          .map((k) => h("th", {}, t(`deliveries.${k}`))))),
        h("tbody", {}, items.map(row)))
      : h("p", { class: "muted small" }, t("deliveries.nobody")));
  };
  box.load = load;
  load();
  return box;
}

// Which tables are open, so that a board redrawn by a live change keeps them open.
const expanded = new Set();

/** A small "deliveries" button that shows or hides the table under it. */
export function deliveriesToggle(what, id) {
  const key = `${what}/${id}`;
  const slot = h("div");
  let table = null;
  const button = h("button", { type: "button", class: "small quiet", "aria-expanded": "false", onclick: () => show(!table) },
    t("deliveries.button"));
  function show(on) {
    if (table) table.remove();
    table = on ? deliveriesTable(what, id) : null;
    if (table) slot.append(table);
    if (on) expanded.add(key);
    else expanded.delete(key);
    button.setAttribute("aria-expanded", String(on));
  }
  if (expanded.has(key)) show(true);
  return h("div", {}, button, slot);
}
