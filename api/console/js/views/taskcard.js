// A task as a card, with the actions the signed-in person may take on it, and its timeline.
// For the worker on the street it says where (the venue, its address and a navigation link),
// what happened (the rule and the device, the camera's picture), who has it, by when, and why it
// was handed back; for the dispatcher it sends the task on to someone the server accepts.

import { SUPERVISORS, api, objectUrl } from "../api.js";
import { act, due, h, severityChip, toast } from "../dom.js";
import { ago, clock, label, t, title } from "../i18n.js";
import { deliveriesToggle } from "./deliveries.js";
import { photoGallery, photoPicker } from "./photos.js";

const STAGED = new Set(["reported", "dispatched", "returned", "accepted", "handling", "rework"]);
const GROUPS = ["grid", "community", "departments"]; // GET /api/tasks/{id}/candidates
const pictures = new Map(); // task id → a promise of its picture's object URL (kept across reloads)

/** For sorting: the soonest deadline first; tasks without one last, newest first among them. */
export function urgent(a, b) {
  const da = a.deadline_at ? Date.parse(a.deadline_at) : Infinity;
  const db = b.deadline_at ? Date.parse(b.deadline_at) : Infinity;
  return da - db || b.id - a.id;
}

export function stateLabel(state) {
  return label("taskstate", state);
}

/** The venue's time zone, which the task's times are shown in. */
function zone(task) {
  return task.context?.timezone || undefined;
}

/** A `geo:` link that opens the phone's maps at the venue (RFC 5870, with Android's label). */
export function geoLink(context) {
  if (context?.latitude === undefined || context?.latitude === null) return null;
  const at = `${context.latitude},${context.longitude}`;
  const name = encodeURIComponent(context.venue_name || "");
  return `geo:${at}?q=${at}(${name})`;
}

/**
 * The actions on a task for a person, as [action, needs] where needs says what to ask for
 * first: "reason", "note", "assignee", "reassign" or nothing. The server decides in the end.
 */
function actionsFor(task, me) {
  if (me.role === "grid_worker" || me.role === "department") {
    if (task.assignee !== me.id) return [];
    return {
      dispatched: [["accept"], ["hand_back", "reason"]],
      accepted: [["start"], ["hand_back", "reason"]],
      handling: [["feedback", "note"], ["hand_back", "reason"]],
      rework: [["start"], ["hand_back", "reason"]],
    }[task.state] || [];
  }
  if (!SUPERVISORS.has(me.role)) return [];
  const out = {
    reported: [["dispatch", "assignee"]],
    returned: [["dispatch", "assignee"]],
    dispatched: [["reassign", "reassign"]],
    accepted: [["reassign", "reassign"]],
    feedback: [["check"]],
    checking: [["approve"], ["reject", "reason"]],
    suspended: [["resume"]],
  }[task.state] || [];
  if (STAGED.has(task.state)) out.push(["extend", "reason"]);
  if (task.state !== "closed" && task.state !== "suspended") out.push(["suspend", "reason"]);
  return out;
}

function actionLabel(action, task) {
  return action === "start" && task.state === "rework" ? t("task.action.restart") : t(`task.action.${action}`);
}

/**
 * A modal form: `fields` are [label, element] pairs. Resolves to true when confirmed, false
 * when cancelled (the elements keep what was entered).
 */
function form(heading, fields, confirm) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "ask task-form" },
      h("form", { method: "dialog" },
        h("h1", {}, heading),
        fields.map(([text, element]) => {
          if (!element.id) element.id = `f-${Math.random().toString(36).slice(2, 9)}`;
          return [h("label", { for: element.id }, text), element];
        }),
        h("div", { class: "row" }, h("span", { class: "spacer" }),
          h("button", { type: "button", class: "quiet", onclick: () => dialog.close("") }, t("task.cancel")),
          h("button", { class: "primary", value: "ok" }, confirm))));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "ok");
    });
    document.body.append(dialog);
    dialog.showModal();
    fields[0]?.[1].focus();
  });
}

/** Whom to send it to, grouped as the server gives them (its grid, other grids, departments). */
async function assigneeSelect(task) {
  const groups = await api(`/api/tasks/${task.id}/candidates`);
  const select = h("select", { name: "assignee", required: true });
  for (const group of GROUPS) {
    const people = (groups[group] || []).filter((p) => p.id !== task.assignee);
    if (!people.length) continue;
    select.append(h("optgroup", { label: t(`dispatch.group.${group}`), dataset: { group } },
      people.map((p) => h("option", { value: p.id }, t("dispatch.option", {
        name: p.name, area: p.scope_name, count: p.open_tasks,
        // A department off any roster is still one the community can call in (报到).
        duty: t(p.on_duty ? "dispatch.on_duty" : group === "departments" ? "dispatch.on_call" : "dispatch.off_duty"),
      })))));
  }
  return select.options.length ? select : null;
}

/** What to send with an action: asked for in a dialog; null when cancelled. */
async function details(action, needs, task) {
  if (!needs) return {};
  if (needs === "assignee" || needs === "reassign") {
    const select = await assigneeSelect(task);
    if (!select) {
      toast(t("dispatch.nobody"), true);
      return null;
    }
    const reason = h("textarea", { name: "reason", required: true });
    const fields = [[t("dispatch.to"), select]];
    if (needs === "reassign") fields.push([t("dispatch.reason"), reason]);
    const heading = t(needs === "reassign" ? "dispatch.reassign_title" : "dispatch.title", { id: task.id });
    const ok = await form(heading, fields, t(`task.action.${action}`));
    if (!ok) return null;
    return needs === "reassign" ? { assignee: select.value, reason: reason.value.trim() } : { assignee: select.value };
  }
  if (needs === "note") {
    const note = h("textarea", { name: "note", required: true });
    const picker = photoPicker(task.id);
    const ok = await form(t("task.feedback_title", { id: task.id }),
      [[t("task.feedback_note"), note], [t("task.photos"), picker.element]], t("task.action.feedback"));
    if (!ok) return null;
    const photos = await picker.ids();
    return photos.length ? { note: note.value.trim(), photos } : { note: note.value.trim() };
  }
  const reason = h("textarea", { name: "reason", required: true });
  const ok = await form(t(`task.reason_title.${action}`, { id: task.id }), [[t("task.reason"), reason]],
    t(`task.action.${action}`));
  if (!ok) return null;
  return action === "extend" ? { reason: reason.value.trim(), extend_s: 1800 } : { reason: reason.value.trim() };
}

/** The incident's camera picture: shown at once (`now`) or on a tap. */
function picture(task, now) {
  const box = h("div", { class: "snapshot task-picture" });
  const show = async () => {
    if (!pictures.has(task.id)) pictures.set(task.id, objectUrl(`/api/tasks/${task.id}/snapshot`));
    try {
      const url = await pictures.get(task.id);
      box.replaceChildren(h("img", { src: url, alt: t("task.picture_alt", { venue: task.context?.venue_name || "" }) }));
    } catch (e) {
      pictures.delete(task.id);
      box.replaceChildren(h("span", { class: "small error" }, e.message));
    }
  };
  if (now || pictures.has(task.id)) show(); // once loaded, kept across the board's reloads
  else {
    box.append(h("button", { type: "button", class: "small quiet", onclick: show }, t("task.picture_show")));
  }
  return box;
}

function timelineEntry(task, e, tz) {
  const photos = e.photos?.length ? e.photos : e.data?.photos; // a feedback's evidence
  const system = e.actor === "system";
  const who = system ? t("task.system") : e.actor_name || e.actor;
  const moved = e.to_state && e.to_state !== e.from_state;
  return h("li", { dataset: { action: e.action } },
    h("span", { class: "muted" }, clock(e.at, tz)), " ",
    t("task.event_by", { action: label("task.event", e.action), who }),
    e.assignee_name ? h("span", {}, " ", t("task.event_to", { name: e.assignee_name })) : null,
    moved ? h("span", { class: "muted" }, " ", t("task.event_state", { state: stateLabel(e.to_state) })) : null,
    // The system's own reasons are its log's words; what it did is in the action's name.
    e.reason && !system ? h("div", { class: "muted" }, t("task.event_reason", { reason: e.reason })) : null,
    e.note ? h("div", {}, t("task.event_note", { note: e.note })) : null,
    photos?.length ? photoGallery(task.id, photos) : null);
}

/**
 * The card. `names` may have Maps from person and area ids to names (`people`, `areas`) for
 * what the task's context does not name; `done()` runs after an action; `alone`: on the task's
 * own page (which shows its deliveries itself); `pictureNow`: load the picture at once (the
 * worker's phone) rather than on a tap (the dispatcher's board); `opened`: the ids of the tasks
 * whose timeline is open, kept by the page so that a reload keeps them open.
 */
export function taskCard(task, { me, names = {}, done, moved = false, alone = false, pictureNow = true,
  opened = new Set() }) {
  const c = task.context || {};
  const tz = zone(task);
  const area = (id, name) => name || names.areas?.get(id) || id;
  const assignee = task.assignee
    ? (task.assignee === me.id ? t("task.you") : c.assignee_name || names.people?.get(task.assignee) || task.assignee)
    : null;
  const timeline = h("ol", { class: "timeline", hidden: true });
  const buttons = actionsFor(task, me).map(([action, needs]) => {
    const b = h("button", { type: "button", class: action === "accept" ? "primary" : null, dataset: { action },
      onclick: () => act(b, async () => {
        const extra = await details(action, needs, task);
        if (extra === null) return;
        await api(`/api/tasks/${task.id}/actions`, { method: "POST", body: { action, ...extra } });
        done();
      }) }, actionLabel(action, task));
    return b;
  });
  const show = async (open) => {
    timeline.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) opened.add(task.id);
    else opened.delete(task.id);
    if (!open) return;
    const events = await api(`/api/tasks/${task.id}/events`);
    timeline.replaceChildren(...events.map((e) => timelineEntry(task, e, tz)));
  };
  const toggle = h("button", { type: "button", class: "small quiet", dataset: { toggle: "timeline" },
    "aria-expanded": "false", onclick: () => show(timeline.hidden) }, t("task.timeline"));
  if (opened.has(task.id)) show(true).catch((e) => toast(e.message, true)); // open before a reload
  const geo = geoLink(c);
  const open = task.state !== "closed" && task.state !== "suspended";
  const classes = ["card", task.severity, task.flagged ? "flagged" : "", moved ? "moved" : ""].join(" ");
  return h("article", { class: classes, dataset: { task: task.id, state: task.state } },
    h("div", { class: "row" }, severityChip(task.severity), h("span", { class: "muted small" }, `#${task.id}`),
      task.emergency ? h("span", { class: "chip red" }, t("task.emergency")) : null,
      h("span", { class: "spacer" }), h("span", { class: "small state" }, stateLabel(task.state))),
    h("div", { class: "title" }, title(task)),
    c.rule || c.device_name
      ? h("div", { class: "what small" }, c.device_name
        ? t("task.what", { rule: c.rule ? label("rule", c.rule) : t("task.no_rule"), device: c.device_name })
        : label("rule", c.rule))
      : null,
    c.venue_name
      ? h("div", { class: "place" },
        // Supervisors go on to the venue's page; a worker called in from elsewhere has none.
        h("div", { class: "venue-name" }, SUPERVISORS.has(me.role) ? h("a", { href: `#/venue/${c.venue_id}` }, c.venue_name) : c.venue_name),
        c.venue_address ? h("address", { class: "small" }, c.venue_address) : null,
        geo ? h("a", { class: "nav-link", href: geo, dataset: { geo: "" } }, t("task.navigate")) : null)
      : null,
    c.snapshot ? picture(task, pictureNow) : null,
    c.handed_back
      ? h("p", { class: "handed-back", dataset: { handedBack: c.handed_back.by } }, t("task.handed_back", {
        who: c.handed_back.by_name || c.handed_back.by, reason: c.handed_back.reason,
        when: ago(c.handed_back.at) }))
      : null,
    h("div", { class: "meta" },
      h("span", { class: "assignee", title: task.assignee || "" },
        assignee ? t("task.assignee", { name: assignee }) : t("task.unassigned")),
      h("span", {}, area(task.grid_id, c.grid_name)),
      task.level_id !== task.grid_id
        ? h("span", { class: "overdue" }, t("task.escalated", { area: area(task.level_id, c.level_name) }))
        : null,
      open && task.deadline_at ? h("span", { class: "deadline" }, t("task.deadline", { time: clock(task.deadline_at, tz) })) : null,
      open ? due(task.deadline_at, tz) : null),
    c.photos?.length ? photoGallery(task.id, c.photos) : null,
    buttons.length ? h("div", { class: "actions" }, buttons) : null,
    h("div", { class: "row" }, toggle, alone ? null : h("a", { class: "small", href: `#/task/${task.id}` }, t("task.open")),
      SUPERVISORS.has(me.role) ? h("a", { class: "small", href: `#/incident/${task.incident_id}` }, t("task.incident")) : null),
    timeline, SUPERVISORS.has(me.role) && !alone ? deliveriesToggle("tasks", task.id) : null);
}
