// The registry, for admins: areas, venues, edge nodes, devices, people and duty shifts in the
// admin's own area, listed, added, edited (with the version read: a stale edit shows what
// changed meanwhile) and switched off and on; a node's secret and enrolment code shown once;
// a registry file uploaded, its plan shown, then applied.

import { api, venueNames } from "../api.js";
import { act, chip, h, toast } from "../dom.js";
import { ago, label, t } from "../i18n.js";

// Every string this view shows, from the catalogues (registry.*), in one place.
const m = (key) => t(`registry.${key}`);
const T = {
  get title() { return m("title"); },
  get intro() { return m("intro"); },
  get tabs() { return Object.fromEntries(TABS.map((k) => [k, m(`tab.${k}`)])); },
  get refusedIntro() { return m("refused_intro"); },
  get refusedNone() { return m("refused_none"); },
  get refusedHeads() { return ["client", "node", "venue", "why", "times", "first", "last"].map((k) => m(`refused.${k}`)); },
  get one() { return Object.fromEntries(Object.keys(FIELDS).map((k) => [k, m(`one.${k}`)])); },
  add: (what) => t("registry.add", { what }),
  edit: (what, id) => t("registry.edit", { what, id }),
  get save() { return t("common.save"); },
  get cancel() { return t("common.cancel"); },
  get close() { return t("common.close"); },
  get editButton() { return m("edit_button"); },
  get disable() { return m("disable"); },
  get enable() { return m("enable"); },
  get more() { return m("more"); },
  get includeDisabled() { return m("include_disabled"); },
  get filterArea() { return m("filter_area"); },
  get everywhere() { return m("everywhere"); },
  get empty() { return m("empty"); },
  get active() { return m("active"); },
  get disabled() { return m("disabled"); },
  saved: (what, id) => t("registry.saved", { what, id }),
  switched: (id, on) => t(on ? "registry.enabled" : "registry.disabled_toast", { id }),
  get status() { return m("status"); },
  actions: "",
  get stale() { return m("stale"); },
  get staleField() { return m("stale_field"); },
  get staleNow() { return m("stale_now"); },
  get staleYours() { return m("stale_yours"); },
  get staleRetry() { return m("stale_retry"); },
  get staleNothing() { return m("stale_nothing"); },
  get secretButton() { return m("secret_button"); },
  secretTitle: (id) => t("registry.secret_title", { id }),
  get secretWarn() { return m("secret_warn"); },
  secretConfirm: (id) => t("registry.secret_confirm", { id }),
  get copy() { return m("copy"); },
  get copied() { return m("copied"); },
  get copyFailed() { return m("copy_failed"); },
  get enrolButton() { return m("enrol_button"); },
  enrolTitle: (id) => t("registry.enrol_title", { id }),
  get enrolWarn() { return m("enrol_warn"); },
  validFor: (hours) => t("registry.valid_for", { count: hours }),
  get siteButton() { return m("site_button"); },
  siteConfirm: (id) => t("registry.site_confirm", { id }),
  siteSaved: (name) => t("registry.site_saved", { name }),
  behind: (run, want) => t("registry.behind", { run, want }),
  get configError() { return m("config_error"); },
  get noSecret() { return m("no_secret"); },
  secretAt: (at) => t("registry.secret_at", { ago: ago(at) }),
  get bulkIntro() { return m("bulk_intro"); },
  get fileText() { return m("file_text"); },
  get fileName() { return m("file_name"); },
  get fileChoose() { return m("file_choose"); },
  get prune() { return m("prune"); },
  get plan() { return m("plan"); },
  get apply() { return m("apply"); },
  get planEmpty() { return m("plan_empty"); },
  get planTitle() { return m("plan_title"); },
  get applied() { return m("applied"); },
};
const TABS = ["areas", "venues", "nodes", "devices", "people", "duty", "bulk", "refused"];

const LEVELS = ["city", "district", "subdistrict", "community", "grid"];
const VENUE_KINDS = ["city_centre", "cluster_centre", "community_centre", "grid_station", "building_corner",
  "self_service_station", "shelter", "estate"];
const DEVICE_KINDS = ["door", "counter", "camera", "speaker"];
const ROLES = ["admin", "operator", "dispatcher", "grid_worker", "department", "viewer"];
const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

// The form of each kind: field name (the API's and the registry file's), its label's key
// (registry.field.*), input type.
// `nullable`: an empty input is sent as null; `json`: edited as JSON text.
const FIELDS = {
  areas: [
    { name: "id", key: "id", required: true, fixed: true },
    { name: "level", key: "level", type: "select", options: LEVELS, labels: "territory.level", fixed: true },
    { name: "name", key: "name", required: true },
    { name: "parent", key: "parent", nullable: true, fixed: true },
    { name: "boundary", key: "boundary", type: "json", nullable: true },
  ],
  venues: [
    { name: "id", key: "id", required: true, fixed: true },
    { name: "grid", key: "grid", required: true },
    { name: "name", key: "name", required: true },
    { name: "kind", key: "kind", type: "select", options: VENUE_KINDS, labels: "venuekind" },
    { name: "address", key: "address" },
    { name: "lat", key: "lat", type: "number", step: "any", nullable: true },
    { name: "lon", key: "lon", type: "number", step: "any", nullable: true },
    { name: "capacity", key: "capacity", type: "number", nullable: true },
    { name: "shelter", key: "shelter", type: "checkbox" },
    { name: "open_24h", key: "open_24h", type: "checkbox" },
    { name: "unstaffed", key: "unstaffed", type: "checkbox" },
    { name: "opening_hours", key: "opening_hours", type: "json" },
    { name: "timezone", key: "timezone", value: "Asia/Shanghai" },
  ],
  nodes: [
    { name: "id", key: "id", required: true, fixed: true },
    { name: "venue", key: "venue", required: true },
    { name: "name", key: "name" },
  ],
  devices: [
    { name: "id", key: "id", required: true, fixed: true },
    { name: "node", key: "node", required: true },
    { name: "kind", key: "kind", type: "select", options: DEVICE_KINDS, labels: "device" },
    { name: "name", key: "name" },
    { name: "model", key: "model", nullable: true },
    { name: "zone", key: "zone", nullable: true },
    { name: "driver", key: "driver", value: "simulated" },
    { name: "settings", key: "settings", type: "json" },
  ],
  people: [
    { name: "id", key: "person_id", required: true, fixed: true },
    { name: "name", key: "name", required: true },
    { name: "role", key: "role", type: "select", options: ROLES, labels: "role" },
    { name: "scope", key: "scope", required: true },
    { name: "phone", key: "phone", nullable: true },
    { name: "email", key: "email", type: "email", nullable: true },
    { name: "wecom_id", key: "wecom_id", nullable: true },
    { name: "dingtalk_id", key: "dingtalk_id", nullable: true },
    { name: "language", key: "language", type: "select", options: ["zh-CN", "en"], labels: "shell.language" },
  ],
  duty: [
    { name: "id", key: "id", required: true, fixed: true },
    { name: "grid", key: "grid", required: true },
    { name: "person", key: "person", required: true },
    { name: "days", key: "days", type: "days" },
    { name: "starts", key: "starts", type: "time", required: true },
    { name: "ends", key: "ends", type: "time", required: true },
    { name: "timezone", key: "timezone", value: "Asia/Shanghai" },
    { name: "valid_from", key: "valid_from", type: "date", nullable: true },
    { name: "valid_to", key: "valid_to", type: "date", nullable: true },
  ],
};

// The list's columns: the header's key (registry.col.*) and how a cell reads; `names` maps area
// and venue ids to their names.
const COLUMNS = {
  areas: [["id", (r) => code(r.id)], ["name", (r) => r.name], ["level", (r) => label("territory.level", r.level)],
    ["parent", (r, names) => (r.parent ? names.get(r.parent) || code(r.parent) : "–")]],
  venues: [["id", (r) => code(r.id)], ["name", (r) => r.name], ["kind", (r) => label("venuekind", r.kind)],
    ["grid", (r, names) => names.get(r.grid) || code(r.grid)], ["capacity", (r) => r.capacity ?? "–"]],
  nodes: [["id", (r) => code(r.id)], ["venue", (r, names) => names.get(r.venue) || code(r.venue)], ["name", (r) => r.name],
    ["config", nodeConfig], ["secret", (r) => (r.secret_issued_at ? T.secretAt(r.secret_issued_at) : T.noSecret)]],
  devices: [["id", (r) => code(r.id)], ["kind", (r) => label("device", r.kind)], ["name", (r) => r.name], ["node", (r) => code(r.node)],
    ["driver", (r) => code(r.driver)]],
  people: [["id", (r) => code(r.id)], ["name", (r) => r.name], ["role", (r) => label("role", r.role)],
    ["area", (r, names) => names.get(r.scope) || code(r.scope)]],
  duty: [["id", (r) => code(r.id)], ["person", (r) => code(r.person)], ["grid", (r, names) => names.get(r.grid) || code(r.grid)],
    ["days", (r) => r.days.map((d) => m(`day.${d}`)).join(t("common.list_separator"))], ["hours", (r) => `${r.starts}–${r.ends}`]],
};

/** An id, shown as data (it is the same in every language). */
function code(id) {
  return h("code", {}, id);
}

/** A field's label (registry.field.*). */
function fieldLabel(f) {
  return m(`field.${f.key}`);
}

function nodeConfig(node) {
  const parts = [`v${node.config_version}`];
  if (node.config_behind) parts.push(" ", chip(T.behind(node.running_config_version, node.config_version), "yellow"));
  if (node.config_error) parts.push(" ", h("span", { class: "chip red", title: node.config_error }, T.configError));
  return h("span", { dataset: { behind: node.config_behind ? "yes" : "no" } }, parts);
}

const KINDS = Object.keys(FIELDS);
const BASE = "/api/v1/admin";

export async function render(root, ctx, tab) {
  const kind = tab || "venues";
  const tabs = h("nav", { class: "row tabs", "aria-label": T.title },
    [...KINDS, "bulk", "refused"].map((k) => h("a", { href: `#/registry/${k}`, class: k === kind ? "active" : null,
      "aria-current": k === kind ? "page" : null }, T.tabs[k])));
  const body = h("div");
  root.append(h("h1", {}, T.title), h("p", { class: "muted" }, T.intro), tabs, body);
  if (kind === "bulk") bulk(body);
  else if (kind === "refused") await refused(body);
  else if (FIELDS[kind]) await list(body, kind, ctx);
}

// ---- a kind's list ----

async function list(root, kind, { me }) {
  const rows = h("tbody");
  const showDisabled = h("input", { type: "checkbox", id: "registry-disabled" });
  const area = h("select", { id: "registry-area" }, h("option", { value: "" }, T.everywhere));
  const more = h("button", { type: "button", class: "small", hidden: true }, T.more);
  const add = h("button", { type: "button", class: "primary", "data-add": kind }, T.add(T.one[kind]));
  const heads = COLUMNS[kind].map(([key]) => m(`col.${key}`)).concat([T.status, T.actions]);
  let names = new Map(); // area and venue ids → names, for the cells
  root.append(
    h("div", { class: "row" },
      h("label", { for: "registry-area" }, T.filterArea), area,
      h("label", { for: "registry-disabled", class: "inline" }, showDisabled, " ", T.includeDisabled),
      h("span", { class: "spacer" }), add),
    h("section", { class: "panel" }, h("table", { id: "registry", class: "responsive", dataset: { kind } },
      h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))), rows), more));
  let after = null;

  async function load(append = false) {
    try {
      const page = await api(`${BASE}/${kind}`, { params: { include_disabled: showDisabled.checked, area: area.value, after: append ? after : null } });
      after = page.next_after;
      more.hidden = !after;
      const made = page.items.map((r) => row(r));
      if (append) rows.append(...made);
      else rows.replaceChildren(...made);
      if (!rows.children.length) rows.append(h("tr", {}, h("td", { colspan: heads.length, class: "empty" }, T.empty)));
    } catch (e) {
      toast(e.message, true);
    }
  }

  function row(r) {
    const buttons = [];
    const edit = h("button", { type: "button", class: "small", onclick: () => openForm(kind, r, done) }, T.editButton);
    buttons.push(edit);
    const self = (kind === "people" && r.id === me.id) || (kind === "areas" && r.id === me.scope_id);
    if (!self) {
      const sw = h("button", { type: "button", class: "small", onclick: () => act(sw, () => switchTo(r, r.disabled)) },
        r.disabled ? T.enable : T.disable);
      buttons.push(sw);
    }
    if (kind === "nodes") {
      const secret = h("button", { type: "button", class: "small", onclick: () => act(secret, () => issueSecret(r.id, done)) }, T.secretButton);
      const enrol = h("button", { type: "button", class: "small", onclick: () => act(enrol, () => enrolment(r.id)) }, T.enrolButton);
      const site = h("button", { type: "button", class: "small", onclick: () => act(site, () => siteFile(r.id, done)) }, T.siteButton);
      buttons.push(secret, enrol, site);
    }
    return h("tr", { dataset: { id: r.id, disabled: r.disabled ? "yes" : "no" } },
      COLUMNS[kind].map(([, cell]) => h("td", {}, cell(r, names))),
      h("td", {}, r.disabled ? chip(T.disabled, "red") : chip(T.active, "green")),
      h("td", {}, h("div", { class: "row" }, buttons)));
  }

  async function switchTo(r, on) {
    try {
      await api(`${BASE}/${kind}/${encodeURIComponent(r.id)}/${on ? "enable" : "disable"}`, { method: "POST", body: { version: r.version } });
      toast(T.switched(r.name || r.id, on));
    } catch (e) {
      toast(e.message, true);
    }
    await load();
  }

  const done = () => load();
  add.addEventListener("click", () => openForm(kind, null, done));
  showDisabled.addEventListener("change", () => load());
  area.addEventListener("change", () => load());
  more.addEventListener("click", () => act(more, () => load(true)));
  try {
    const [tree, venues] = await Promise.all([api("/api/territory"), kind === "nodes" ? venueNames() : new Map()]);
    names = new Map([...tree.map((n) => [n.id, n.name]), ...venues]);
    area.append(...tree.map((n) => h("option", { value: n.id },
      t("registry.area_option", { name: n.name, level: label("territory.level", n.level) }))));
  } catch (e) {
    toast(e.message, true);
  }
  await load();
}

// ---- the form: add, or edit with the version read ----

function inputFor(f, id) {
  const common = { id, name: f.name, required: f.required || null };
  if (f.type === "select") return h("select", common, f.options.map((o) => h("option", { value: o }, label(f.labels, o))));
  if (f.type === "json") return h("textarea", { ...common, class: "mono", rows: 3, spellcheck: "false" });
  if (f.type === "checkbox") return h("input", { ...common, type: "checkbox" });
  if (f.type === "days") {
    return h("fieldset", { id, class: "days", name: f.name }, h("legend", {}, fieldLabel(f)),
      DAYS.map((d) => h("label", { class: "inline" }, h("input", { type: "checkbox", name: `day-${d}`, value: d }), " ", m(`day.${d}`))));
  }
  return h("input", { ...common, type: f.type || "text", step: f.step || null });
}

function setValue(f, el, record) {
  const v = f.name === "lat" || f.name === "lon" ? record.location?.[f.name] : record[f.name];
  if (f.type === "checkbox") el.checked = Boolean(v);
  else if (f.type === "days") for (const box of el.querySelectorAll("input")) box.checked = (v || DAYS).includes(box.value);
  else if (f.type === "json") el.value = v === null || v === undefined ? "" : JSON.stringify(v);
  else el.value = v ?? f.value ?? "";
}

function valueOf(f, el) {
  if (f.type === "checkbox") return el.checked;
  if (f.type === "days") return [...el.querySelectorAll("input:checked")].map((b) => b.value);
  const text = el.value.trim();
  if (f.type === "json") {
    if (!text) return f.nullable ? null : {};
    try {
      return JSON.parse(text);
    } catch {
      throw Object.assign(new Error(t("registry.not_json", { field: fieldLabel(f) })), { field: f.name });
    }
  }
  if (!text) return f.nullable ? null : "";
  return f.type === "number" ? Number(text) : text;
}

/** The record a form holds, in the API's shape. */
function bodyOf(kind, inputs) {
  const body = {};
  for (const [f, el] of inputs) body[f.name] = valueOf(f, el);
  if (kind === "venues") {
    const { lat, lon } = body;
    delete body.lat;
    delete body.lon;
    body.location = lat === null && lon === null ? null : { lat, lon };
  }
  return body;
}

const DERIVED = new Set(["version", "updated_at", "disabled", "config_version", "running_config_version",
  "config_error", "online", "secret_issued_at", "config_behind", "venue"]);

function fieldsOf(kind, record) {
  return Object.fromEntries(Object.entries(record).filter(([k]) => !DERIVED.has(k) || (kind === "nodes" && k === "venue")));
}

function openForm(kind, record, done) {
  const inputs = FIELDS[kind].map((f, i) => [f, inputFor(f, `field-${f.name}-${i}`)]);
  const error = h("p", { class: "error", role: "alert" });
  const conflict = h("div", { class: "conflict", hidden: true, role: "alert" });
  let version = record?.version ?? null;
  const save = h("button", { class: "primary", type: "submit" }, T.save);
  const form = h("form", { method: "dialog", novalidate: true },
    h("h1", {}, record ? T.edit(T.one[kind], record.id) : T.add(T.one[kind])),
    inputs.map(([f, el]) => (f.type === "days" ? el : f.type === "checkbox"
      ? h("label", { for: el.id, class: "inline" }, el, " ", fieldLabel(f))
      : [h("label", { for: el.id }, fieldLabel(f)), el])),
    conflict, error,
    h("div", { class: "row" }, h("span", { class: "spacer" }),
      h("button", { type: "button", class: "quiet", onclick: () => dialog.close() }, T.cancel), save));
  const dialog = h("dialog", { class: "registry-form", "aria-label": record ? T.edit(T.one[kind], record.id) : T.add(T.one[kind]) }, form);

  function fillFrom(r) {
    for (const [f, el] of inputs) {
      setValue(f, el, r);
      if (f.fixed && record) el.disabled = true; // an id (and an area's place) never changes
    }
  }
  fillFrom(record || {});

  function showStale(current, sent) {
    const mine = { ...sent };
    const now = fieldsOf(kind, current);
    if (kind === "venues") {
      now.lat = current.location?.lat ?? null;
      now.lon = current.location?.lon ?? null;
      mine.lat = sent.location?.lat ?? null;
      mine.lon = sent.location?.lon ?? null;
      delete now.location;
      delete mine.location;
    }
    const show = (v) => (v === null || v === undefined ? "–" : typeof v === "object" ? JSON.stringify(v) : String(v));
    const differ = Object.keys(now).filter((k) => show(now[k]) !== show(mine[k]));
    const nameOf = (k) => {
      const f = FIELDS[kind].find((x) => x.name === k);
      return f ? fieldLabel(f) : code(k);
    };
    conflict.replaceChildren(h("p", {}, T.stale),
      differ.length
        ? h("table", { class: "small" }, h("thead", {}, h("tr", {}, [T.staleField, T.staleNow, T.staleYours].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, differ.map((k) => h("tr", { dataset: { field: k } }, h("td", {}, nameOf(k)), h("td", {}, show(now[k])), h("td", {}, show(mine[k]))))))
        : h("p", { class: "muted" }, T.staleNothing),
      h("button", { type: "button", onclick: () => {
        record = current;
        version = current.version;
        fillFrom(current);
        conflict.hidden = true;
        inputs.find(([f]) => !f.fixed)?.[1].focus();
      } }, T.staleRetry));
    conflict.hidden = false;
    conflict.querySelector("button").focus();
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    act(save, async () => {
      error.textContent = "";
      for (const [, el] of inputs) el.removeAttribute("aria-invalid");
      let body;
      try {
        body = bodyOf(kind, inputs);
        for (const [f] of inputs.filter(([f]) => f.required && !body[f.name])) {
          throw Object.assign(new Error(t("registry.required", { field: fieldLabel(f) })), { field: f.name });
        }
        const path = record ? `${BASE}/${kind}/${encodeURIComponent(record.id)}` : `${BASE}/${kind}`;
        const saved = await api(path, { method: record ? "PUT" : "POST", body: record ? { ...body, version } : body });
        toast(T.saved(T.one[kind], saved.name || saved.id));
        dialog.close();
        done();
        // A node just registered comes with its first secret, in this answer only.
        if (!record && saved.secret) showOnce(T.secretTitle(saved.id), T.secretWarn, saved.secret);
      } catch (err) {
        if (err.status === 409 && err.body?.current) {
          showStale(err.body.current, body);
          return;
        }
        error.textContent = err.message;
        const field = err.field || err.body?.field || String(err.message).match(/^(?:body\.)?([a-z_]+)[.:]/)?.[1];
        const named = inputs.find(([f]) => f.name === field || (field === "location" && f.name === "lat"));
        if (named) {
          named[1].setAttribute("aria-invalid", "true");
          named[1].focus();
        }
      }
    });
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  inputs.find(([, el]) => !el.disabled)?.[1].focus();
}

// ---- shown once: a secret, an enrolment code ----

function showOnce(title, warning, value, extra = null) {
  const field = h("input", { id: "once-value", class: "mono once", readonly: true, value, "aria-describedby": "once-warning" });
  const copy = h("button", { type: "button", class: "primary" }, T.copy);
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(value);
      copy.textContent = T.copied;
    } catch {
      field.select();
      toast(T.copyFailed, true);
    }
  });
  const dialog = h("dialog", { class: "once", "aria-label": title },
    h("h1", {}, title),
    h("p", { id: "once-warning", class: "warning", role: "alert" }, warning),
    h("label", { for: "once-value" }, title), field, extra,
    h("div", { class: "row" }, h("span", { class: "spacer" }), copy,
      h("button", { type: "button", onclick: () => dialog.close() }, T.close)));
  dialog.addEventListener("close", () => dialog.remove()); // the value goes with it
  document.body.append(dialog);
  dialog.showModal();
  field.select();
  copy.focus();
}

async function issueSecret(nodeId, done) {
  if (!confirm(T.secretConfirm(nodeId))) return;
  try {
    const issued = await api(`${BASE}/nodes/${encodeURIComponent(nodeId)}/secret`, { method: "POST" });
    showOnce(T.secretTitle(nodeId), T.secretWarn, issued.secret);
    done();
  } catch (e) {
    toast(e.message, true);
  }
}

async function enrolment(nodeId) {
  try {
    const issued = await api(`${BASE}/nodes/${encodeURIComponent(nodeId)}/enrolment-code`, { method: "POST", body: {} });
    showOnce(T.enrolTitle(nodeId), T.enrolWarn, issued.code,
      issued.valid_hours ? h("p", { class: "muted small" }, T.validFor(issued.valid_hours)) : null);
  } catch (e) {
    toast(e.message, true);
  }
}

async function siteFile(nodeId, done) {
  if (!confirm(T.siteConfirm(nodeId))) return;
  try {
    const answer = await api(`${BASE}/nodes/${encodeURIComponent(nodeId)}/site-file`, { method: "POST" });
    // JSON is YAML: the edge reads the file as it reads the command line's NODE.site.yaml.
    const name = `${nodeId}.site.yaml`;
    const url = URL.createObjectURL(new Blob([JSON.stringify(answer.site_file, null, 2)], { type: "application/yaml" }));
    const link = h("a", { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    toast(T.siteSaved(name));
    done();
  } catch (e) {
    toast(e.message, true);
  }
}

// ---- the broker's refused connects ----

async function refused(root) {
  const rows = h("tbody");
  root.append(h("p", { class: "muted small" }, T.refusedIntro),
    h("section", { class: "panel" }, h("table", { id: "refused", class: "responsive" },
      h("thead", {}, h("tr", {}, T.refusedHeads.map((t) => h("th", { scope: "col" }, t)))), rows)));
  try {
    const items = await api(`${BASE}/broker/refusals`);
    rows.replaceChildren(...items.map((r) => h("tr", { dataset: { client: r.client } },
      h("td", {}, code(r.client)), h("td", {}, r.node_id ? code(r.node_id) : "–"), h("td", {}, r.site ? code(r.site) : "–"),
      h("td", {}, /^not authorised/.test(r.reason) ? m("refused_not_authorised") : code(r.reason)),
      h("td", {}, r.count), h("td", {}, ago(r.first_seen)), h("td", {}, ago(r.last_seen)))));
    if (!items.length) rows.append(h("tr", {}, h("td", { colspan: T.refusedHeads.length, class: "empty" }, T.refusedNone)));
  } catch (e) {
    rows.replaceChildren(h("tr", {}, h("td", { colspan: T.refusedHeads.length, class: "error" }, e.message)));
  }
}

// ---- bulk upload: the plan first, then apply ----

function bulk(root) {
  const text = h("textarea", { id: "bulk-text", class: "mono", rows: 14, spellcheck: "false" });
  const name = h("input", { id: "bulk-name", value: "registry.yaml", required: true });
  const file = h("input", { id: "bulk-file", type: "file", accept: ".yaml,.yml,text/yaml" });
  const prune = h("input", { id: "bulk-prune", type: "checkbox" });
  const planButton = h("button", { type: "submit", class: "primary" }, T.plan);
  const applyButton = h("button", { type: "button", class: "danger", hidden: true }, T.apply);
  const error = h("p", { class: "error", role: "alert" });
  const result = h("section", { id: "bulk-plan", class: "panel", hidden: true, "aria-live": "polite" });
  let planned = null; // the request the shown plan was made for

  file.addEventListener("change", async () => {
    const chosen = file.files[0];
    if (!chosen) return;
    text.value = await chosen.text();
    name.value = chosen.name;
    applyButton.hidden = true;
  });
  for (const el of [text, name, prune]) el.addEventListener("input", () => (applyButton.hidden = true));

  const request = () => ({ text: text.value, filename: name.value.trim(), prune: prune.checked });

  async function call(step, button) {
    error.textContent = "";
    return act(button, async () => {
      try {
        return await api(`${BASE}/registry/${step}`, { method: "POST", body: step === "plan" ? request() : planned });
      } catch (e) {
        // The registry moved on (409): the plan as it is now, to apply again.
        if (e.status === 409 && e.body?.current) shown(e.body.current);
        error.textContent = e.message;
        return null;
      }
    });
  }

  function shown(answer) {
    planned = { ...request(), fingerprint: answer.fingerprint };
    showPlan(result, T.planTitle, answer);
    applyButton.hidden = !answer.changes;
  }

  const form = h("form", { class: "panel", onsubmit: async (e) => {
    e.preventDefault();
    const answer = await call("plan", planButton);
    if (answer) shown(answer);
  } },
  h("p", { class: "muted small" }, T.bulkIntro),
  h("label", { for: "bulk-text" }, T.fileText), text,
  h("div", { class: "row" },
    h("div", {}, h("label", { for: "bulk-name" }, T.fileName), name),
    h("div", {}, h("label", { for: "bulk-file" }, T.fileChoose), file)),
  h("label", { for: "bulk-prune", class: "inline" }, prune, " ", T.prune),
  error, h("div", { class: "row" }, h("span", { class: "spacer" }), planButton, applyButton));
  applyButton.addEventListener("click", async () => {
    const answer = await call("apply", applyButton);
    if (!answer) return;
    showPlan(result, T.applied, answer);
    applyButton.hidden = true;
    toast(T.applied);
  });
  root.append(form, result);
}

function showPlan(el, title, answer) {
  const counts = answer.summary || {};
  el.replaceChildren(h("h2", {}, title),
    h("div", { class: "counters" }, Object.entries(counts).map(([k, n]) => h("div", { class: "counter", dataset: { count: k } }, h("b", {}, n), label("registry.action", k)))),
    answer.changes ? h("pre", { class: "mono plan", tabindex: 0 }, answer.text) : h("p", { class: "empty" }, T.planEmpty));
  el.hidden = false;
}
