// The live incident board: what is open now, newest first, red on top; acknowledge, silence, resolve.

import { SUPERVISORS, api, objectUrl, silenced, venueNames, venueZones } from "../api.js";
import { act, ask, debounce, h, severityChip, toast } from "../dom.js";
import { ago, label, stamp, t, title } from "../i18n.js";
import { deliveriesToggle } from "./deliveries.js";

const RANK = { red: 0, yellow: 1, green: 2 };

export async function render(root, { me, live }) {
  const state = { severity: "", view: "active", fresh: new Set() };
  const pictures = new Map(); // incident id → object URL of its snapshot
  let zones = new Map(); // venue id → its time zone
  const counters = h("div", { class: "counters" });
  const body = h("tbody");
  const severity = h("select", { "aria-label": t("board.severity"), onchange: () => { state.severity = severity.value; load(); } },
    h("option", { value: "" }, t("board.all_severities")),
    ["red", "yellow", "green"].map((c) => h("option", { value: c }, label("severity", c))));
  const view = h("select", { "aria-label": t("board.which"), onchange: () => { state.view = view.value; load(); } },
    h("option", { value: "active" }, t("board.active")), h("option", { value: "resolved" }, t("board.resolved")));
  const heads = ["", "board.incident", "board.venue", "board.device", "board.seen", "board.opened", "board.status", ""];
  root.append(
    h("div", { class: "row" }, h("h1", {}, t("board.title")), h("span", { class: "spacer" }), severity, view),
    counters,
    h("div", { class: "panel" }, h("table", { class: "responsive", id: "incidents" },
      h("thead", {}, h("tr", {}, heads.map((k) => h("th", {}, k ? t(k) : "")))),
      body)));

  async function fetchIncidents() {
    const params = { severity: state.severity || undefined, limit: 200 };
    if (state.view === "resolved") return (await api("/api/incidents", { params: { ...params, status: "resolved", limit: 50 } })).items;
    const active = await api("/api/incidents", { params: { ...params, status: ["open", "acknowledged"], limit: 400 } });
    return active.items
      .sort((a, b) => RANK[a.severity] - RANK[b.severity] || b.id - a.id);
  }

  async function load() {
    let incidents;
    let names;
    try {
      [incidents, names, zones] = await Promise.all([fetchIncidents(), venueNames(), venueZones()]);
    } catch (e) {
      toast(e.message, true);
      return;
    }
    showCounters(incidents);
    body.replaceChildren(...incidents.map((i) => row(i, names)));
    if (!incidents.length) body.append(h("tr", {}, h("td", { colspan: 8, class: "empty" }, t("board.quiet"))));
    state.fresh.clear();
  }

  function showCounters(incidents) {
    const active = incidents.filter((i) => i.status !== "resolved");
    const count = (f) => active.filter(f).length;
    counters.replaceChildren(
      h("div", { class: "counter red" }, h("b", { id: "count-red" }, count((i) => i.severity === "red" && i.status === "open")), t("board.count_red")),
      h("div", { class: "counter yellow" }, h("b", {}, count((i) => i.severity === "yellow" && i.status === "open")), t("board.count_yellow")),
      h("div", { class: "counter" }, h("b", {}, count((i) => i.status === "acknowledged")), t("board.count_acknowledged")),
      h("div", { class: "counter" }, h("b", {}, count(silenced)), t("board.count_silenced")));
  }

  function row(i, names) {
    const quiet = silenced(i);
    const zone = zones.get(i.venue_id) || undefined; // its venue's time zone (the platform's: none)
    const actions = h("div", { class: "row" });
    if (SUPERVISORS.has(me.role) && i.status !== "resolved") {
      if (i.status === "open") {
        actions.append(button(t("board.acknowledge"), () => api(`/api/incidents/${i.id}/acknowledge`, { method: "POST", body: {} })));
      }
      actions.append(quiet
        ? button(t("board.unsilence"), () => api(`/api/incidents/${i.id}/silence`, { method: "POST", body: { minutes: 0 } }))
        : button(t("board.silence"), () => api(`/api/incidents/${i.id}/silence`, { method: "POST", body: { minutes: 30 } })));
      actions.append(button(t("board.resolve"), async () => {
        const note = await ask(t("board.resolve_title", { title: title(i) }), { label: t("board.resolve_note") });
        return note === null ? null : api(`/api/incidents/${i.id}/resolve`, { method: "POST", body: { note } });
      }));
    }
    return h("tr", { class: state.fresh.has(i.id) ? "flash" : null, dataset: { id: i.id, severity: i.severity } },
      h("td", {}, severityChip(i.severity)),
      h("td", {}, h("div", {}, h("a", { href: `#/incident/${i.id}`, class: "plain" }, title(i))),
        h("div", { class: "muted small" }, t("board.id_rule", { id: i.id, rule: label("rule", i.rule) })),
        i.detail?.snapshot ? picture(i) : null, deliveriesToggle("incidents", i.id)),
      h("td", {}, i.venue_id
        ? h("a", { href: `#/venue/${i.venue_id}` }, names.get(i.venue_id) || i.venue_id)
        : h("span", { class: "muted" }, t("shell.platform"))),
      h("td", {}, i.device_name || i.title_params?.device || (i.device_id ? h("code", {}, i.device_id) : "–")),
      h("td", { title: t("board.last_seen", { time: stamp(i.last_seen, zone) }) },
        i.occurrences > 1 ? t("board.occurrences", { count: i.occurrences, ago: ago(i.last_seen) }) : ago(i.last_seen)),
      h("td", { title: stamp(i.opened_at, zone) }, ago(i.opened_at)),
      h("td", {}, label("status", i.status), quiet ? h("div", { class: "muted small" }, t("board.silenced_until", { time: stamp(i.silenced_until, zone) })) : null),
      h("td", {}, actions));
  }

  /** The camera's snapshot of an incident, loaded when asked for and kept across reloads. */
  function picture(i) {
    const box = h("div", { class: "snapshot" });
    const img = (url) => h("img", { src: url, alt: t("board.picture_alt", { id: i.id }) });
    if (pictures.has(i.id)) {
      box.append(img(pictures.get(i.id)));
      return box;
    }
    const show = h("button", { type: "button", class: "small quiet", onclick: async () => {
      show.remove();
      try {
        pictures.set(i.id, await objectUrl(`/api/incidents/${i.id}/snapshot`));
        box.append(img(pictures.get(i.id)));
      } catch (e) {
        box.append(h("span", { class: "muted small" }, e.message));
      }
    } }, t("board.picture"));
    box.append(show);
    return box;
  }

  function button(label, f) {
    const b = h("button", { class: "small", type: "button", onclick: () => act(b, async () => {
      if ((await f()) !== null) load();
    }) }, label);
    return b;
  }

  const reload = debounce(load, 200);
  const onIncident = (e) => { state.fresh.add(e.detail.id); reload(); };
  live.addEventListener("incident", onIncident);
  live.addEventListener("resync", reload);
  const ticker = setInterval(load, 60_000); // keeps the "ago" columns honest
  await load();
  return () => {
    live.removeEventListener("incident", onIncident);
    live.removeEventListener("resync", reload);
    clearInterval(ticker);
    for (const url of pictures.values()) URL.revokeObjectURL(url);
  };
}
