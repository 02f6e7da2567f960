// The broadcast and door-command dialog: send, then watch each device's answer come in.

import { FINAL_COMMAND_STATES, api } from "../api.js";
import { h } from "../dom.js";
import { ago, label, number, t } from "../i18n.js";

const STATE_COLOUR = { queued: "grey", sent: "yellow", done: "green", failed: "red", rejected: "red", expired: "red" };

function dialogShell(title) {
  const dialog = h("dialog", { class: "command" });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.append(h("h1", {}, title));
  return dialog;
}

/** Polls the commands until each has a final state (or a minute passed); fills `table` as it goes. */
async function track(dialog, commands, names = new Map()) {
  const summary = h("p", { class: "tracking" });
  const body = h("tbody");
  dialog.append(summary, h("table", { class: "results" },
    h("thead", {}, h("tr", {}, ["commands.device", "commands.state", "commands.detail", "commands.answered"].map((k) => h("th", {}, t(k))))), body),
  h("div", { class: "row" }, h("span", { class: "spacer" }),
    h("button", { type: "button", class: "primary", onclick: () => dialog.close() }, t("common.close"))));
  const started = Date.now();
  const ids = commands.map((c) => c.id);
  for (;;) {
    body.replaceChildren(...commands.map((c) => h("tr", { dataset: { device: c.device_id, state: c.state } },
      h("td", {}, names.get(c.device_id) || h("code", {}, c.device_id)),
      h("td", {}, h("span", { class: `chip ${STATE_COLOUR[c.state] || "grey"}` }, label("commands.state", c.state))),
      h("td", { class: "small" }, c.detail || ""),
      h("td", { class: "muted small" }, c.result_at ? ago(c.result_at) : ""))));
    const final = commands.filter((c) => FINAL_COMMAND_STATES.has(c.state));
    const done = commands.filter((c) => c.state === "done").length;
    const seconds = number((Date.now() - started) / 1000, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
    summary.textContent = t("commands.tracking", { answered: final.length, count: commands.length, done, seconds });
    if (final.length === commands.length || Date.now() - started > 60_000 || !dialog.open) return;
    await new Promise((r) => setTimeout(r, 500));
    try {
      // The query string holds ~40 ids comfortably; large broadcasts are asked for in slices.
      const slices = [];
      for (let i = 0; i < ids.length; i += 40) slices.push(ids.slice(i, i + 40));
      commands = (await Promise.all(slices.map((s) => api("/api/commands", { params: { ids: s } })))).flat();
    } catch (e) {
      summary.textContent = t("commands.cannot_follow", { reason: e.message });
      return;
    }
  }
}

function cancelOrSend(dialog) {
  return h("div", { class: "row" }, h("span", { class: "spacer" }),
    h("button", { type: "button", class: "quiet", onclick: () => dialog.close() }, t("common.cancel")),
    h("button", { type: "submit", class: "primary" }, t("common.send")));
}

async function send(dialog, form, error, f, names) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  error.textContent = "";
  try {
    const commands = await f();
    form.remove();
    await track(dialog, commands, names);
  } catch (e) {
    error.textContent = e.message;
    button.disabled = false;
  }
}

/** A message for the speakers of a venue ({venue, name}) or of a whole area ({area, name}). */
export function broadcastDialog({ venue, area, name }) {
  const dialog = dialogShell(t("commands.broadcast_to", { name }));
  const text = h("textarea", { name: "text", required: true, maxlength: 2000, placeholder: t("commands.spoken") });
  const priority = h("select", { name: "priority" }, ["notice", "routine", "emergency"].map((p) => h("option", { value: p }, t(`commands.priority.${p}`))));
  const repeat = h("input", { name: "repeat", type: "number", min: 1, max: 20, value: 1 });
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { onsubmit: (e) => {
    e.preventDefault();
    const url = venue ? `/api/venues/${venue}/broadcast` : `/api/areas/${area}/broadcast`;
    const body = { message: { kind: "text", text: text.value.trim() }, priority: priority.value, repeat: Number(repeat.value) };
    send(dialog, form, error, () => api(url, { method: "POST", body }));
  } },
  h("label", {}, t("commands.message")), text,
  h("div", { class: "row" }, h("label", {}, t("commands.priority")), priority, h("label", {}, t("commands.repeat")), repeat),
  error, cancelOrSend(dialog));
  dialog.append(form);
  dialog.showModal();
  text.focus();
}

const DOOR_ACTIONS = ["unlock", "lock", "lockdown", "release"]; // commands.door.<action>

/** The longest unlock by role, in seconds (api.routes.operations); operators and admins may also
 * leave a door unlocked until it is locked again. */
const UNLOCK_MAX_S = { dispatcher: 900, operator: 86400, admin: 86400 };

/** Unlock, lock, lock down or release one door, with the reason the audit log keeps. */
export function doorDialog({ device, name, role, action = "unlock" }) {
  const dialog = dialogShell(t("commands.door_title", { name: name || device }));
  const longest = UNLOCK_MAX_S[role] || 900;
  const choice = h("select", { name: "action" },
    DOOR_ACTIONS.map((v) => h("option", { value: v, selected: v === action }, t(`commands.door.${v}`))));
  const seconds = h("input", { name: "duration_s", type: "number", min: 1, max: longest, value: 10 });
  const untilLocked = longest >= 86400
    ? h("input", { name: "until_locked", type: "checkbox", onchange: () => { seconds.disabled = untilLocked.checked; } })
    : null;
  const reason = h("input", { name: "reason", "aria-required": "true", maxlength: 500, placeholder: t("commands.reason_placeholder") });
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { onsubmit: (e) => {
    e.preventDefault();
    if (!reason.value.trim()) {
      error.textContent = t("commands.reason_needed");
      reason.focus();
      return;
    }
    const unlock = choice.value === "unlock";
    const body = {
      device_id: device,
      action: choice.value,
      duration_s: unlock && !untilLocked?.checked ? Number(seconds.value) : null,
      reason: reason.value.trim(),
    };
    send(dialog, form, error, () => api("/api/commands/door", { method: "POST", body }), new Map([[device, name || device]]));
  } },
  h("label", {}, t("commands.action")), choice,
  h("label", {}, t("commands.seconds", { longest })), seconds,
  untilLocked ? h("label", { class: "inline" }, untilLocked, " ", t("commands.until_locked")) : null,
  h("label", {}, t("commands.reason")), reason,
  error, cancelOrSend(dialog));
  dialog.append(form);
  dialog.showModal();
  reason.focus();
}
