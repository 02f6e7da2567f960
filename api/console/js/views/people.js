// People in the admin's area, for administrators: who is active, and switching them off and on.
// Disabling someone refuses every token they hold at once and ends their live streams.

import { api } from "../api.js";
import { chip, h, toast } from "../dom.js";
import { label, t } from "../i18n.js";
import * as walls from "./walls.js";

export async function render(root, { me }) {
  const body = h("tbody");
  let areas = new Map(); // area id → name
  root.append(h("h1", {}, t("people.title")),
    h("p", { class: "muted" }, t("people.intro")),
    h("section", { class: "panel" }, h("table", { id: "people", class: "responsive" },
      h("thead", {}, h("tr", {}, ["person", "name", "role", "area", "status", ""].map((k) => h("th", {}, k ? t(`people.${k}`) : "")))), body)));

  async function switchTo(person, on) {
    try {
      await api(`/api/people/${encodeURIComponent(person.id)}/${on ? "enable" : "disable"}`, { method: "POST" });
      toast(t(on ? "people.enabled" : "people.disabled_toast", { name: person.name }));
      await load();
    } catch (e) {
      toast(e.message, true);
    }
  }

  async function load() {
    try {
      const [people, tree] = await Promise.all([api("/api/people", { params: { include_disabled: true } }),
        areas.size ? null : api("/api/territory")]);
      if (tree) areas = new Map(tree.map((n) => [n.id, n.name]));
      body.replaceChildren(...people.map((p) => h("tr", { dataset: { person: p.id, active: p.active ? "yes" : "no" } },
        h("td", {}, h("code", {}, p.id)), h("td", {}, p.name), h("td", {}, label("role", p.role)),
        h("td", { class: "small" }, areas.get(p.scope_id) || h("code", {}, p.scope_id)),
        h("td", {}, p.active ? chip(t("people.active"), "green") : chip(t("people.disabled"), "red")),
        h("td", {}, p.id === me.id ? null : h("button", { class: "small", type: "button", onclick: () => switchTo(p, !p.active) },
          t(p.active ? "people.disable" : "people.enable"))))));
    } catch (e) {
      toast(e.message, true);
    }
  }
  await load();
  root.append(await walls.panel()); // wall tokens (views/walls.js)
}
