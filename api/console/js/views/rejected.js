// Messages the ingest refused, for administrators: what, from whom, why, how often.

import { api } from "../api.js";
import { ago, clock, h, toast } from "../dom.js";

export async function render(root) {
  const body = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "Older");
  root.append(h("h1", {}, "Rejected messages"),
    h("p", { class: "muted" }, "Stored with their reason; repeats of the same refusal are counted, not stored again."),
    h("section", { class: "panel" }, h("table", { class: "responsive" },
      h("thead", {}, h("tr", {}, ["Last seen", "Node", "Topic", "Reason", "Detail", "Times", "Bytes"].map((t) => h("th", {}, t)))), body),
    more));
  async function load(cursor) {
    try {
      const page = await api("/api/rejected", { params: { cursor, limit: 100 } });
      body.append(...page.items.map((r) => h("tr", {},
        h("td", { title: `first ${clock(r.first_seen)}` }, ago(r.last_seen)), h("td", { class: "mono" }, r.node_id || "?"),
        h("td", { class: "mono small" }, r.topic), h("td", {}, r.reason), h("td", { class: "small" }, r.detail),
        h("td", {}, r.occurrences), h("td", {}, r.payload_size))));
      if (!body.children.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "empty" }, "Nothing refused.")));
      more.hidden = page.next_cursor === null;
      more.onclick = () => load(page.next_cursor);
    } catch (e) {
      toast(e.message, true);
    }
  }
  await load();
}
