// People in the admin's area, for administrators: who is active, and switching them off and on.
// Disabling someone refuses every token they hold at once and ends their live streams.

import { api } from "../api.js";
import { chip, h, toast } from "../dom.js";
import * as walls from "./walls.js";

export async function render(root, { me }) {
  const body = h("tbody");
  root.append(h("h1", {}, "People"),
    h("p", { class: "muted" }, "Disabling a person signs them out everywhere at once; enabling them lets them sign in again."),
    h("section", { class: "panel" }, h("table", { id: "people", class: "responsive" },
      h("thead", {}, h("tr", {}, ["Person", "Name", "Role", "Area", "Status", ""].map((t) => h("th", {}, t)))), body)));

  async function switchTo(person, on) {
    try {
      await api(`/api/people/${encodeURIComponent(person.id)}/${on ? "enable" : "disable"}`, { method: "POST" });
      toast(`${person.id} ${on ? "enabled" : "disabled"}`);
      await load();
    } catch (e) {
      toast(e.message, true);
    }
  }

  async function load() {
    try {
      const people = await api("/api/people", { params: { include_disabled: true } });
      body.replaceChildren(...people.map((p) => h("tr", { dataset: { person: p.id, active: p.active ? "yes" : "no" } },
        h("td", { class: "mono" }, p.id), h("td", {}, p.name), h("td", {}, p.role.replace("_", " ")),
        h("td", { class: "mono small" }, p.scope_id),
        h("td", {}, p.active ? chip("active", "green") : chip("disabled", "red")),
        h("td", {}, p.id === me.id ? null : h("button", { class: "small", type: "button", onclick: () => switchTo(p, !p.active) },
          p.active ? "Disable" : "Enable")))));
    } catch (e) {
      toast(e.message, true);
    }
  }
  await load();
  root.append(await walls.panel()); // wall tokens (views/walls.js)
}
