// The registry, for admins: areas, venues, edge nodes, devices, people and duty shifts in the
// admin's own area, listed, added, edited (with the version read: a stale edit shows what
// changed meanwhile) and switched off and on; a node's secret and enrolment code shown once;
// a registry file uploaded, its plan shown, then applied.

import { api } from "../api.js";
import { act, ago, chip, h, toast } from "../dom.js";

// Every string this view shows, in one place (issue 14 translates them).
const T = {
  title: "Registry",
  intro: "What your area has and who works in it. Changes are audited; disabled records keep their history.",
  tabs: { areas: "Areas", venues: "Venues", nodes: "Edge nodes", devices: "Devices", people: "People", duty: "Duty", bulk: "Bulk upload", refused: "Refused connects" },
  refusedIntro: "Connects the broker turned away: unknown accounts, disabled nodes, old secrets. A node you expect here needs its secret or to be enabled.",
  refusedNone: "No refused connects.",
  refusedHeads: ["Account or address", "Node", "Venue", "Why", "Times", "First", "Last"],
  one: { areas: "area", venues: "venue", nodes: "edge node", devices: "device", people: "person", duty: "duty shift" },
  add: (what) => `Add ${what}`,
  edit: (what, id) => `Edit ${what} ${id}`,
  save: "Save",
  cancel: "Cancel",
  close: "Close",
  editButton: "Edit",
  disable: "Disable",
  enable: "Enable",
  more: "More",
  includeDisabled: "Show disabled ones",
  filterArea: "Area",
  everywhere: "All of my area",
  empty: "Nothing here yet.",
  active: "active",
  disabled: "disabled",
  saved: (what, id) => `${what} ${id} saved`,
  switched: (id, on) => `${id} ${on ? "enabled" : "disabled"}`,
  status: "Status",
  actions: "",
  stale: "Someone changed this record after you opened it. It is shown below as it is now.",
  staleField: "Field",
  staleNow: "Now",
  staleYours: "Yours",
  staleRetry: "Edit the current record",
  staleNothing: "Your change and theirs touch the same version only; nothing differs from what you sent.",
  secretButton: "Issue secret",
  secretTitle: (id) => `Secret of ${id}`,
  secretWarn: "Shown once. Copy it into the node's site file now: it is not kept anywhere in the clear and cannot be shown again. The node's session on any earlier secret is cut.",
  secretConfirm: (id) => `Issue a new secret for ${id}? Its current secret stops working at once.`,
  copy: "Copy",
  copied: "Copied",
  copyFailed: "Select the text and copy it by hand",
  enrolButton: "Enrolment code",
  enrolTitle: (id) => `Enrolment code for ${id}`,
  enrolWarn: "Shown once. Give it to the installer: `gridwatch edge --enrol CODE --platform URL` exchanges it for the node's credentials. It is single use.",
  validFor: (hours) => `Valid for ${hours} h, once.`,
  siteButton: "Site file",
  siteConfirm: (id) => `Download a complete site file for ${id}? It holds a NEW secret: the node's current secret stops working at once. Keep the file safe.`,
  siteSaved: (name) => `${name} downloaded: it holds the node's secret, keep it safe`,
  behind: (run, want) => `runs config ${run}, should run ${want}`,
  configError: "refused its configuration",
  noSecret: "no secret yet",
  secretAt: (at) => `secret ${ago(at)}`,
  bulkIntro: "Paste a registry file (YAML, every section in it, up to 1 MiB; larger ones and CSV tables go through `gridwatch registry apply`) or choose one. You see the plan first; nothing changes until you apply it. Only your area can change.",
  fileText: "File contents",
  fileName: "File name",
  fileChoose: "Or choose a file",
  prune: "Disable what the file leaves out (prune)",
  plan: "Show plan",
  apply: "Apply",
  planEmpty: "Nothing would change.",
  planTitle: "Plan",
  applied: "Applied",
  yes: "yes",
  no: "no",
};

const LEVELS = ["city", "district", "subdistrict", "community", "grid"];
const VENUE_KINDS = ["city_centre", "cluster_centre", "community_centre", "grid_station", "building_corner",
  "self_service_station", "shelter", "estate"];
const DEVICE_KINDS = ["door", "counter", "camera", "speaker"];
const ROLES = ["admin", "operator", "dispatcher", "grid_worker", "department", "viewer"];
const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

// The form of each kind: field name (the API's and the registry file's), label, input type.
// `nullable`: an empty input is sent as null; `json`: edited as JSON text.
const FIELDS = {
  areas: [
    { name: "id", label: "Id", required: true, fixed: true },
    { name: "level", label: "Level", type: "select", options: LEVELS, fixed: true },
    { name: "name", label: "Name", required: true },
    { name: "parent", label: "Parent area", nullable: true, fixed: true },
    { name: "boundary", label: "Boundary (GeoJSON)", type: "json", nullable: true },
  ],
  venues: [
    { name: "id", label: "Id", required: true, fixed: true },
    { name: "grid", label: "Grid", required: true },
    { name: "name", label: "Name", required: true },
    { name: "kind", label: "Kind", type: "select", options: VENUE_KINDS },
    { name: "address", label: "Address" },
    { name: "lat", label: "Latitude", type: "number", step: "any", nullable: true },
    { name: "lon", label: "Longitude", type: "number", step: "any", nullable: true },
    { name: "capacity", label: "Capacity (people)", type: "number", nullable: true },
    { name: "shelter", label: "Emergency shelter", type: "checkbox" },
    { name: "open_24h", label: "Open 24 hours", type: "checkbox" },
    { name: "unstaffed", label: "Unstaffed", type: "checkbox" },
    { name: "opening_hours", label: 'Opening hours (JSON, e.g. {"mon": [["08:30", "20:30"]]})', type: "json" },
    { name: "timezone", label: "Time zone", value: "Asia/Shanghai" },
  ],
  nodes: [
    { name: "id", label: "Id", required: true, fixed: true },
    { name: "venue", label: "Venue", required: true },
    { name: "name", label: "Name" },
  ],
  devices: [
    { name: "id", label: "Id", required: true, fixed: true },
    { name: "node", label: "Edge node", required: true },
    { name: "kind", label: "Kind", type: "select", options: DEVICE_KINDS },
    { name: "name", label: "Name" },
    { name: "model", label: "Model", nullable: true },
    { name: "zone", label: "Zone", nullable: true },
    { name: "driver", label: "Driver", value: "simulated" },
    { name: "settings", label: "Driver settings (JSON; name passwords as edge environment variables)", type: "json" },
  ],
  people: [
    { name: "id", label: "Id (sign-in name)", required: true, fixed: true },
    { name: "name", label: "Name", required: true },
    { name: "role", label: "Role", type: "select", options: ROLES },
    { name: "scope", label: "Area they work in", required: true },
    { name: "phone", label: "Phone", nullable: true },
    { name: "email", label: "E-mail", type: "email", nullable: true },
    { name: "wecom_id", label: "WeCom id", nullable: true },
    { name: "dingtalk_id", label: "DingTalk id", nullable: true },
    { name: "language", label: "Language", type: "select", options: ["zh-CN", "en"] },
  ],
  duty: [
    { name: "id", label: "Id", required: true, fixed: true },
    { name: "grid", label: "Grid", required: true },
    { name: "person", label: "Person", required: true },
    { name: "days", label: "Days", type: "days" },
    { name: "starts", label: "Starts (local time)", type: "time", required: true },
    { name: "ends", label: "Ends (local time; not after the start: past midnight)", type: "time", required: true },
    { name: "timezone", label: "Time zone", value: "Asia/Shanghai" },
    { name: "valid_from", label: "Valid from", type: "date", nullable: true },
    { name: "valid_to", label: "Valid to", type: "date", nullable: true },
  ],
};

// The list's columns: header and how a cell reads.
const COLUMNS = {
  areas: [["Id", (r) => r.id, "mono"], ["Name", (r) => r.name], ["Level", (r) => r.level], ["Parent", (r) => r.parent || "–", "mono"]],
  venues: [["Id", (r) => r.id, "mono"], ["Name", (r) => r.name], ["Kind", (r) => r.kind.replaceAll("_", " ")],
    ["Grid", (r) => r.grid, "mono"], ["Capacity", (r) => r.capacity ?? "–"]],
  nodes: [["Id", (r) => r.id, "mono"], ["Venue", (r) => r.venue, "mono"], ["Name", (r) => r.name],
    ["Configuration", nodeConfig], ["Secret", (r) => (r.secret_issued_at ? T.secretAt(r.secret_issued_at) : T.noSecret)]],
  devices: [["Id", (r) => r.id, "mono"], ["Kind", (r) => r.kind], ["Name", (r) => r.name], ["Node", (r) => r.node, "mono"],
    ["Driver", (r) => r.driver]],
  people: [["Id", (r) => r.id, "mono"], ["Name", (r) => r.name], ["Role", (r) => r.role.replace("_", " ")],
    ["Area", (r) => r.scope, "mono"]],
  duty: [["Id", (r) => r.id, "mono"], ["Person", (r) => r.person, "mono"], ["Grid", (r) => r.grid, "mono"],
    ["Days", (r) => r.days.join(" ")], ["Hours", (r) => `${r.starts}–${r.ends}`]],
};

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
  const heads = COLUMNS[kind].map(([title]) => title).concat([T.status, T.actions]);
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
      COLUMNS[kind].map(([, cell, cls]) => h("td", { class: cls || null }, cell(r))),
      h("td", {}, r.disabled ? chip(T.disabled, "red") : chip(T.active, "green")),
      h("td", {}, h("div", { class: "row" }, buttons)));
  }

  async function switchTo(r, on) {
    try {
      await api(`${BASE}/${kind}/${encodeURIComponent(r.id)}/${on ? "enable" : "disable"}`, { method: "POST", body: { version: r.version } });
      toast(T.switched(r.id, on));
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
    const tree = await api("/api/territory");
    area.append(...tree.map((n) => h("option", { value: n.id }, `${n.name} (${n.level}, ${n.id})`)));
  } catch (e) {
    toast(e.message, true);
  }
  await load();
}

// ---- the form: add, or edit with the version read ----

function inputFor(f, id) {
  const common = { id, name: f.name, required: f.required || null };
  if (f.type === "select") return h("select", common, f.options.map((o) => h("option", { value: o }, o.replaceAll("_", " "))));
  if (f.type === "json") return h("textarea", { ...common, class: "mono", rows: 3, spellcheck: "false" });
  if (f.type === "checkbox") return h("input", { ...common, type: "checkbox" });
  if (f.type === "days") {
    return h("fieldset", { id, class: "days", name: f.name }, h("legend", {}, f.label),
      DAYS.map((d) => h("label", { class: "inline" }, h("input", { type: "checkbox", name: `day-${d}`, value: d }), ` ${d}`)));
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
      throw Object.assign(new Error(`${f.name}: not valid JSON`), { field: f.name });
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
      ? h("label", { for: el.id, class: "inline" }, el, " ", f.label)
      : [h("label", { for: el.id }, f.label), el])),
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
    conflict.replaceChildren(h("p", {}, T.stale),
      differ.length
        ? h("table", { class: "small" }, h("thead", {}, h("tr", {}, [T.staleField, T.staleNow, T.staleYours].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, differ.map((k) => h("tr", { dataset: { field: k } }, h("td", { class: "mono" }, k), h("td", {}, show(now[k])), h("td", {}, show(mine[k]))))))
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
          throw Object.assign(new Error(`${f.name}: required`), { field: f.name });
        }
        const path = record ? `${BASE}/${kind}/${encodeURIComponent(record.id)}` : `${BASE}/${kind}`;
        const saved = await api(path, { method: record ? "PUT" : "POST", body: record ? { ...body, version } : body });
        toast(T.saved(T.one[kind], saved.id));
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
      h("td", { class: "mono" }, r.client), h("td", { class: "mono" }, r.node_id || "–"), h("td", { class: "mono" }, r.site || "–"),
      h("td", {}, r.reason), h("td", {}, r.count), h("td", {}, ago(r.first_seen)), h("td", {}, ago(r.last_seen)))));
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
    h("div", { class: "counters" }, Object.entries(counts).map(([k, n]) => h("div", { class: "counter", dataset: { count: k } }, h("b", {}, n), k))),
    answer.changes ? h("pre", { class: "mono plan", tabindex: 0 }, answer.text) : h("p", { class: "empty" }, T.planEmpty));
  el.hidden = false;
}
