// Messages the ingest refused, for administrators: what, from whom, why, how often.

import { api } from "../api.js";
import { h, toast } from "../dom.js";
import { ago, label, stamp, t } from "../i18n.js";

export async function render(root) {
  const body = h("tbody");
  const more = h("button", { type: "button", hidden: true }, t("rejected.older"));
  root.append(h("h1", {}, t("rejected.title")),
    h("p", { class: "muted" }, t("rejected.intro")),
    h("section", { class: "panel" }, h("table", { class: "responsive" },
      h("thead", {}, h("tr", {}, ["last_seen", "node", "topic", "reason", "detail", "times", "bytes"].map((k) => h("th", {}, t(`rejected.${k}`))))), body),
    more));
  async function load(cursor) {
    try {
      const page = await api("/api/rejected", { params: { cursor, limit: 100 } });
      body.append(...page.items.map((r) => h("tr", {},
        h("td", { title: t("rejected.first", { time: stamp(r.first_seen) }) }, ago(r.last_seen)),
        h("td", {}, r.node_id ? h("code", {}, r.node_id) : "?"),
        h("td", { class: "small" }, h("code", {}, r.topic)), h("td", {}, label("rejected.reason", r.reason)),
        h("td", { class: "small" }, h("code", {}, r.detail)),
        h("td", {}, r.occurrences), h("td", {}, r.payload_size))));
      if (!body.children.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "empty" }, t("rejected.none"))));
      more.hidden = page.next_cursor === null;
      more.onclick = () => load(page.next_cursor);
    } catch (e) {
      toast(e.message, true);
    }
  }
  await load();
}
