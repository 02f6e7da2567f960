// Wall tokens, for administrators (a section of the People page): make a view-only token for a
// control room's wall (shown once, with the address to open on the screen), see when each was
// last used, revoke one. Every issue and revocation is audited by the API.

import { api } from "../api.js";
import { chip, h, toast } from "../dom.js";
import { ago, stamp, t } from "../i18n.js";

function state(w) {
  if (w.revoked_at) return chip(t("wall.admin.revoked"), "grey");
  if (w.expires_at && new Date(w.expires_at) <= new Date()) return chip(t("wall.admin.expired"), "grey");
  return chip(w.expires_at ? t("wall.admin.expires", { date: stamp(w.expires_at) }) : t("wall.admin.valid"), "green");
}

/** The section: a form to make a token, the list of tokens of the admin's area. */
export async function panel() {
  const body = h("tbody");
  const shown = h("div", { id: "wall-token-made", hidden: true });
  const areas = h("select", { id: "wall-area", required: true });
  const name = h("input", { id: "wall-name", maxlength: 100 });
  const days = h("input", { id: "wall-days", type: "number", min: 1, step: 1 });
  const form = h("form", { class: "row", onsubmit: make },
    h("label", { for: "wall-area" }, t("wall.admin.area")), areas,
    h("label", { for: "wall-name" }, t("wall.admin.name")), name,
    h("label", { for: "wall-days" }, t("wall.admin.days")), days,
    h("button", { class: "primary", type: "submit" }, t("wall.admin.make")));
  const section = h("section", { class: "panel", id: "wall-tokens" },
    h("h2", {}, t("wall.admin.title")), h("p", { class: "muted" }, t("wall.admin.intro")), form, shown,
    h("table", { class: "responsive" },
      h("thead", {}, h("tr", {}, ["name", "area", "state", "used", "by"].map((c) => h("th", {}, t(`wall.admin.col.${c}`))), h("th", {}))),
      body));

  async function make(e) {
    e.preventDefault();
    try {
      const made = await api("/api/v1/admin/wall-tokens", { method: "POST", body: {
        area: areas.value, name: name.value, valid_days: days.value ? Number(days.value) : null } });
      const address = `${location.origin}/console/wall.html#token=${made.token}`;
      shown.hidden = false;
      shown.replaceChildren(h("p", {}, t("wall.admin.made")), h("code", { class: "mono", id: "wall-address" }, address));
      name.value = "";
      await load();
    } catch (err) {
      toast(err.message, true);
    }
  }

  async function revoke(w) {
    try {
      await api(`/api/v1/admin/wall-tokens/${w.id}/revoke`, { method: "POST" });
      toast(t("wall.admin.done", { id: w.id }));
      await load();
    } catch (err) {
      toast(err.message, true);
    }
  }

  async function load() {
    try {
      const tokens = await api("/api/v1/admin/wall-tokens");
      body.replaceChildren(...(tokens.length ? tokens.map((w) => h("tr", { dataset: { wallToken: w.id } },
        h("td", {}, w.name || t("wall.admin.unnamed")), h("td", {}, w.area_name), h("td", {}, state(w)),
        h("td", {}, w.last_used_at ? t("wall.admin.used", { ago: ago(w.last_used_at) }) : t("wall.admin.unused")),
        h("td", { class: "mono small" }, w.created_by),
        h("td", {}, w.revoked_at ? null : h("button", { class: "small", type: "button", onclick: () => revoke(w) }, t("wall.admin.revoke")))))
        : [h("tr", {}, h("td", { colspan: 6, class: "empty" }, t("wall.admin.none")))]));
    } catch (err) {
      toast(err.message, true);
    }
  }

  try {
    const tree = await api("/api/territory");
    areas.replaceChildren(...tree.map((a) => h("option", { value: a.id }, `${"\u00a0\u00a0".repeat(["city", "district", "subdistrict", "community", "grid"].indexOf(a.level))}${a.name}`)));
  } catch (err) {
    toast(err.message, true);
  }
  await load();
  return section;
}
