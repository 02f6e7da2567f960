// One task, the page a notification's link opens: the card (with "accept" for its assignee),
// its timeline and who was notified about it.

import { SUPERVISORS, api } from "../api.js";
import { debounce, fill, h } from "../dom.js";
import { t } from "../i18n.js";
import { deliveriesTable } from "./deliveries.js";
import { taskCard } from "./taskcard.js";

export async function render(root, ctx, id, forPerson) {
  const { live } = ctx;
  const card = h("div", { class: "inbox", id: "task" });
  // Who was paged is the supervisors' to follow (an assignee from another grid may not read it).
  const deliveries = SUPERVISORS.has(ctx.me.role) ? deliveriesTable("tasks", id) : null;
  // A message's link names whom it was sent to: someone else signed in here is told.
  const other = forPerson && forPerson !== ctx.me.id
    ? h("p", { class: "warning", id: "link-for" }, t("task.link_for", { person: forPerson, me: ctx.me.name }))
    : null;
  const notified = deliveries
    ? h("section", { class: "panel task-deliveries" }, h("h2", {}, t("task.notified")), deliveries)
    : null;
  root.append(h("h1", {}, t("task.heading", { id })), ...[other, card, notified].filter(Boolean));

  let loaded = false;
  async function load() {
    let task;
    try {
      task = await api(`/api/tasks/${id}`);
    } catch (e) {
      fill(card, h("p", { class: "error" }, e.status === 404 ? t("task.missing", { id }) : e.message));
      return;
    }
    fill(card, taskCard(task, { me: ctx.me, done: load, alone: true }));
    if (loaded && deliveries) deliveries.load();
    loaded = true;
  }

  const reload = debounce(load, 250);
  const onTask = (e) => { if (String(e.detail.id) === String(id)) reload(); };
  live.addEventListener("task", onTask);
  live.addEventListener("resync", reload);
  await load();
  return () => {
    live.removeEventListener("task", onTask);
    live.removeEventListener("resync", reload);
  };
}
