// Emergency mode: every speaker of an area plays the message, doors release, deadlines tighten.

import { api } from "../api.js";
import { act, clock, h, toast } from "../dom.js";

export async function render(root, { me }) {
  const may = me.role === "admin" || me.role === "operator";
  const list = h("tbody");
  const area = h("select", { name: "area", required: true });
  const reason = h("input", { name: "reason", required: true, maxlength: 500, placeholder: "e.g. flood warning, level 2" });
  const message = h("textarea", { name: "message", maxlength: 2000, placeholder: "Played on every speaker (the default message if empty)" });
  const error = h("p", { class: "error", role: "alert" });
  const start = h("button", { type: "submit", class: "danger" }, "Start emergency mode");
  const form = h("form", { class: "panel", onsubmit: (e) => {
    e.preventDefault();
    act(start, async () => {
      error.textContent = "";
      try {
        const body = { area: area.value, reason: reason.value.trim() };
        if (message.value.trim()) body.message = message.value.trim();
        show(await api("/api/emergencies", { method: "POST", body }));
        toast(`Emergency mode on in ${area.selectedOptions[0].textContent}`);
      } catch (err) {
        error.textContent = err.message;
      }
    });
  } },
  h("h2", {}, "Switch an area to emergency mode"),
  h("p", { class: "muted small" }, "Every speaker in the area plays the message, shelter doors unlock, and task deadlines tighten. It stays on until ended here; ending it locks the shelters again."),
  h("label", {}, "Area"), area, h("label", {}, "Reason"), reason, h("label", {}, "Message"), message,
  error, h("div", { class: "row" }, h("span", { class: "spacer" }), start));
  const proposed = h("tbody");
  const proposals = h("section", { class: "panel", hidden: true },
    h("h2", {}, "Proposed by rules"),
    h("p", { class: "muted small" }, "A rule asked for emergency mode. Nothing happens until an operator confirms it."),
    h("table", { class: "responsive", id: "proposals" },
      h("thead", {}, h("tr", {}, ["Area", "Why", "Rule", "Proposed", ""].map((t) => h("th", {}, t)))), proposed));
  root.append(h("h1", {}, "Emergency mode"), proposals,
    h("section", { class: "panel" }, h("table", { class: "responsive", id: "emergencies" },
      h("thead", {}, h("tr", {}, ["Area", "Reason", "Started", "By", "Ended", ""].map((t) => h("th", {}, t)))), list)),
    may ? form : h("p", { class: "muted" }, "Operators switch emergency mode; you can see it here."));

  function show(emergencies) {
    list.replaceChildren(...emergencies.map((e) => {
      const end = h("button", { type: "button", class: "small", onclick: () => act(end, async () => {
        show(await api(`/api/emergencies/${e.territory_id}/end`, { method: "POST" }));
        toast(`Emergency mode ended in ${e.territory_id}`);
      }) }, "End");
      return h("tr", { dataset: { active: e.ended_at ? "no" : "yes" } },
        h("td", {}, e.ended_at ? e.territory_id : h("span", { class: "chip red" }, `${e.territory_id} · ON`)),
        h("td", {}, e.reason, h("div", { class: "muted small" }, e.message)),
        h("td", {}, clock(e.started_at)), h("td", {}, e.started_by),
        h("td", {}, e.ended_at ? `${clock(e.ended_at)} by ${e.ended_by}` : "–"),
        h("td", {}, !e.ended_at && may ? end : null));
    }));
    if (!emergencies.length) list.append(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No emergency so far.")));
  }

  function propose(items) {
    proposals.hidden = !items.length;
    proposed.replaceChildren(...items.map((p) => {
      const decide = (button, decision) => act(button, async () => {
        show(await api(`/api/emergencies/proposals/${p.id}/${decision}`, { method: "POST" }));
        propose(await api("/api/emergencies/proposals"));
        toast(decision === "confirm" ? `Emergency mode on in ${p.territory_id}` : "Proposal dismissed");
      });
      const confirm = h("button", { type: "button", class: "small danger", onclick: () => decide(confirm, "confirm") }, "Confirm");
      const dismiss = h("button", { type: "button", class: "small", onclick: () => decide(dismiss, "dismiss") }, "Dismiss");
      return h("tr", { dataset: { proposal: p.id } },
        h("td", {}, h("span", { class: "chip red" }, p.territory_id)), h("td", {}, p.reason),
        h("td", {}, p.rule), h("td", {}, clock(p.proposed_at)),
        h("td", {}, may ? h("div", { class: "row" }, confirm, dismiss) : null));
    }));
  }

  try {
    const [emergencies, nodes, asked] = await Promise.all(
      [api("/api/emergencies"), api("/api/territory"), api("/api/emergencies/proposals")]);
    area.replaceChildren(...nodes.map((n) => h("option", { value: n.id }, `${"· ".repeat(depth(n, nodes))}${n.name} (${n.level})`)));
    show(emergencies);
    propose(asked);
  } catch (e) {
    toast(e.message, true);
  }
}

function depth(node, nodes) {
  const parent = new Map(nodes.map((n) => [n.id, n.parent_id]));
  let d = 0;
  for (let id = node.parent_id; parent.has(id); id = parent.get(id)) d++;
  return d;
}
