// A task as a card, with the actions the signed-in person may take on it, and its timeline.

import { SUPERVISORS, api } from "../api.js";
import { act, ask, due, h, severityChip } from "../dom.js";
import { clock } from "../i18n.js";
import { deliveriesToggle } from "./deliveries.js";

const STATE_LABEL = {
  reported: "new", dispatched: "dispatched", accepted: "accepted", handling: "in hand",
  feedback: "feedback in", checking: "being checked", closed: "closed", returned: "handed back",
  rework: "rework", suspended: "suspended",
};
const STAGED = new Set(["reported", "dispatched", "returned", "accepted", "handling", "rework"]);

/** For sorting: the soonest deadline first; tasks without one last, newest first among them. */
export function urgent(a, b) {
  const da = a.deadline_at ? Date.parse(a.deadline_at) : Infinity;
  const db = b.deadline_at ? Date.parse(b.deadline_at) : Infinity;
  return da - db || b.id - a.id;
}

export function stateLabel(state) {
  return STATE_LABEL[state] || state;
}

/**
 * The actions on a task for a role, as [label, action, needs] where needs says what to ask
 * for first: "reason", "note", "assignee" or nothing. The server decides in the end.
 */
function actionsFor(task, me) {
  if (me.role === "grid_worker" || me.role === "department") {
    if (task.assignee !== me.id) return [];
    return {
      dispatched: [["Accept", "accept"], ["Hand back", "hand_back", "reason"]],
      accepted: [["Start", "start"], ["Hand back", "hand_back", "reason"]],
      handling: [["Send feedback", "feedback", "note"], ["Hand back", "hand_back", "reason"]],
      rework: [["Start again", "start"], ["Hand back", "hand_back", "reason"]],
    }[task.state] || [];
  }
  if (!SUPERVISORS.has(me.role)) return [];
  const out = {
    reported: [["Dispatch", "dispatch", "assignee"]],
    returned: [["Dispatch", "dispatch", "assignee"]],
    feedback: [["Check", "check"]],
    checking: [["Approve", "approve"], ["Reject", "reject", "reason"]],
    suspended: [["Resume", "resume"]],
  }[task.state] || [];
  if (STAGED.has(task.state)) out.push(["+30 min", "extend", "reason"]);
  if (task.state !== "closed" && task.state !== "suspended") out.push(["Suspend", "suspend", "reason"]);
  return out;
}

async function details(action, needs, task, people) {
  if (!needs) return {};
  if (needs === "assignee") {
    const choices = h("select", { name: "assignee", required: true },
      people(task).map((p) => h("option", { value: p.id },
        `${p.name} (${p.id})${p.on_duty ? " · on duty" : ""} · ${p.open_tasks} open`)));
    const chosen = await ask(`Dispatch #${task.id}`, { label: "Send to", input: choices, confirm: "Dispatch" });
    return chosen === null ? null : { assignee: chosen };
  }
  const questions = {
    reason: [`${action.replace("_", " ")}: why?`, "Reason (kept in the timeline)"],
    note: ["Feedback", "What was done, what you found"],
  };
  const [title, label] = questions[needs];
  const text = await ask(`${title} · #${task.id}`, { label, required: true });
  if (text === null) return null;
  const extra = action === "extend" ? { extend_s: 1800 } : {};
  return needs === "note" ? { note: text } : { reason: text, ...extra };
}

/**
 * The card. `people(task)` gives whom it can be dispatched to; `names` has Maps from person and
 * area ids to names (`people`, `areas`); `done()` runs after an action; `alone`: on the task's
 * own page (which shows its deliveries itself).
 */
export function taskCard(task, { me, people = () => [], names = {}, done, moved = false, alone = false }) {
  const person = (id) => names.people?.get(id) || id;
  const area = (id) => names.areas?.get(id) || id;
  const timeline = h("ol", { class: "timeline", hidden: true });
  const buttons = actionsFor(task, me).map(([label, action, needs]) => {
    const b = h("button", { type: "button", class: action === "accept" ? "primary" : null, dataset: { action },
      onclick: () => act(b, async () => {
        const extra = await details(action, needs, task, people);
        if (extra === null) return;
        await api(`/api/tasks/${task.id}/actions`, { method: "POST", body: { action, ...extra } });
        done();
      }) }, label);
    return b;
  });
  const toggle = h("button", { type: "button", class: "small quiet", onclick: async () => {
    timeline.hidden = !timeline.hidden;
    if (timeline.hidden) return;
    const events = await api(`/api/tasks/${task.id}/events`);
    timeline.replaceChildren(...events.map((e) => h("li", {},
      h("span", { class: "muted" }, clock(e.at)), ` ${e.action.replace("_", " ")} by ${e.actor}`,
      e.to_state && e.to_state !== e.from_state ? ` → ${stateLabel(e.to_state)}` : "",
      e.reason ? h("div", { class: "muted" }, e.reason) : null,
      e.note ? h("div", {}, `“${e.note}”`) : null)));
  } }, "timeline");
  const classes = ["card", task.severity, task.flagged ? "flagged" : "", moved ? "moved" : ""].join(" ");
  return h("article", { class: classes, dataset: { task: task.id, state: task.state } },
    h("div", { class: "row" }, severityChip(task.severity), h("span", { class: "muted small" }, `#${task.id}`),
      task.emergency ? h("span", { class: "chip red" }, "emergency") : null,
      h("span", { class: "spacer" }), h("span", { class: "small" }, stateLabel(task.state))),
    h("div", { class: "title" }, task.title),
    h("div", { class: "meta" },
      h("span", { title: task.assignee || "" }, task.assignee ? `→ ${person(task.assignee)}` : "unassigned"),
      h("span", { title: task.grid_id }, area(task.grid_id)),
      task.level_id !== task.grid_id ? h("span", { class: "overdue" }, `escalated to ${area(task.level_id)}`) : null,
      task.state === "closed" || task.state === "suspended" ? null : due(task.deadline_at)),
    buttons.length ? h("div", { class: "actions" }, buttons) : null,
    h("div", { class: "row" }, toggle, alone ? null : h("a", { class: "small", href: `#/task/${task.id}` }, "open")),
    timeline, SUPERVISORS.has(me.role) && !alone ? deliveriesToggle("tasks", task.id) : null);
}
