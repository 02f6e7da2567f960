// Emergency mode: every speaker of an area plays the message, doors release, deadlines tighten.

import { api } from "../api.js";
import { act, h, toast } from "../dom.js";
import { clock, label, stamp, t } from "../i18n.js";

/** Tells the shell's banner that emergencies changed here. */
function changed() {
  window.dispatchEvent(new Event("gridwatch:emergency"));
}

export async function render(root, { me }) {
  const may = me.role === "admin" || me.role === "operator";
  let names = new Map(); // area id → name
  const areaName = (id) => names.get(id) || id;
  const list = h("tbody");
  const area = h("select", { id: "emergency-area", name: "area", required: true });
  const reason = h("input", { id: "emergency-reason", name: "reason", required: true, maxlength: 500, placeholder: t("emergency.reason_placeholder") });
  const message = h("textarea", { id: "emergency-message", name: "message", maxlength: 2000, placeholder: t("emergency.message_placeholder") });
  const error = h("p", { class: "error", role: "alert" });
  const start = h("button", { type: "submit", class: "danger" }, t("emergency.start"));
  const form = h("form", { class: "panel", onsubmit: (e) => {
    e.preventDefault();
    act(start, async () => {
      error.textContent = "";
      try {
        const body = { area: area.value, reason: reason.value.trim() };
        if (message.value.trim()) body.message = message.value.trim();
        show(await api("/api/emergencies", { method: "POST", body }));
        changed();
        toast(t("emergency.on_in", { area: areaName(area.value) }));
      } catch (err) {
        error.textContent = err.message;
      }
    });
  } },
  h("h2", {}, t("emergency.switch")),
  h("p", { class: "muted small" }, t("emergency.explain")),
  h("label", { for: "emergency-area" }, t("emergency.area")), area,
  h("label", { for: "emergency-reason" }, t("emergency.reason")), reason,
  h("label", { for: "emergency-message" }, t("emergency.message")), message,
  error, h("div", { class: "row" }, h("span", { class: "spacer" }), start));
  const proposed = h("tbody");
  const proposals = h("section", { class: "panel", hidden: true },
    h("h2", {}, t("emergency.proposed")),
    h("p", { class: "muted small" }, t("emergency.proposed_explain")),
    h("table", { class: "responsive", id: "proposals" },
      h("thead", {}, h("tr", {}, ["area", "why", "rule", "proposed_at", ""].map((k) => h("th", {}, k ? t(`emergency.${k}`) : "")))), proposed));
  root.append(h("h1", {}, t("emergency.title")), proposals,
    h("section", { class: "panel" }, h("table", { class: "responsive", id: "emergencies" },
      h("thead", {}, h("tr", {}, ["area", "reason", "started", "by", "ended", ""].map((k) => h("th", {}, k ? t(`emergency.${k}`) : "")))), list)),
    may ? form : h("p", { class: "muted" }, t("emergency.view_only")));

  function show(emergencies) {
    list.replaceChildren(...emergencies.map((e) => {
      const end = h("button", { type: "button", class: "small", onclick: () => act(end, async () => {
        show(await api(`/api/emergencies/${e.territory_id}/end`, { method: "POST" }));
        changed();
        toast(t("emergency.ended_in", { area: e.territory_name || areaName(e.territory_id) }));
      }) }, t("emergency.end"));
      const where = e.territory_name || areaName(e.territory_id);
      return h("tr", { dataset: { active: e.ended_at ? "no" : "yes", area: e.territory_id } },
        h("td", {}, e.ended_at ? where : h("span", { class: "chip red" }, t("emergency.on_chip", { area: where }))),
        h("td", {}, e.reason, h("div", { class: "muted small" }, e.message)),
        h("td", { title: stamp(e.started_at) }, clock(e.started_at)), h("td", {}, person(e.started_by)),
        h("td", {}, e.ended_at ? [h("span", { title: stamp(e.ended_at) }, clock(e.ended_at)), " ", person(e.ended_by)] : "–"),
        h("td", {}, !e.ended_at && may ? end : null));
    }));
    if (!emergencies.length) list.append(h("tr", {}, h("td", { colspan: 6, class: "empty" }, t("emergency.none"))));
  }

  function propose(items) {
    proposals.hidden = !items.length;
    proposed.replaceChildren(...items.map((p) => {
      const decide = (button, decision) => act(button, async () => {
        show(await api(`/api/emergencies/proposals/${p.id}/${decision}`, { method: "POST" }));
        changed();
        propose(await api("/api/emergencies/proposals"));
        toast(decision === "confirm" ? t("emergency.on_in", { area: areaName(p.territory_id) }) : t("emergency.dismissed"));
      });
      const confirm = h("button", { type: "button", class: "small danger", onclick: () => decide(confirm, "confirm") }, t("emergency.confirm"));
      const dismiss = h("button", { type: "button", class: "small", onclick: () => decide(dismiss, "dismiss") }, t("emergency.dismiss"));
      return h("tr", { dataset: { proposal: p.id, rule: p.rule } },
        h("td", {}, h("span", { class: "chip red" }, areaName(p.territory_id))), h("td", {}, p.reason),
        h("td", {}, label("rule", p.rule)), h("td", { title: stamp(p.proposed_at) }, clock(p.proposed_at)),
        h("td", {}, may ? h("div", { class: "row" }, confirm, dismiss) : null));
    }));
  }

  try {
    const [emergencies, nodes, asked] = await Promise.all(
      [api("/api/emergencies"), api("/api/territory"), api("/api/emergencies/proposals")]);
    names = new Map(nodes.map((n) => [n.id, n.name]));
    area.replaceChildren(...nodes.map((n) => h("option", { value: n.id },
      `${"· ".repeat(depth(n, nodes))}${t("emergency.area_option", { name: n.name, level: label("territory.level", n.level) })}`)));
    show(emergencies);
    propose(asked);
  } catch (e) {
    toast(e.message, true);
  }
}

/** A person as the page says them: the signed-in console knows no names of others, so the id. */
function person(id) {
  return id ? h("code", {}, id) : "–";
}

function depth(node, nodes) {
  const parent = new Map(nodes.map((n) => [n.id, n.parent_id]));
  let d = 0;
  for (let id = node.parent_id; parent.has(id); id = parent.get(id)) d++;
  return d;
}
