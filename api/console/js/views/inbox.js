// A grid worker's inbox, made for a phone: my tasks, what to do next, one tap each. A task sent
// to me while the page is open sounds, buzzes (where the phone allows it) and shows a
// notification (through the service worker where a page cannot show one itself).

import { alertsState, beep, setAlerts, systemNotice, vibrate } from "../alerts.js";
import { api } from "../api.js";
import { debounce, fill, h, toast } from "../dom.js";
import { t, title } from "../i18n.js";
import { taskCard, urgent } from "./taskcard.js";

const TODO = ["dispatched", "accepted", "handling", "rework"];

/** On a phone that was never asked: an offer to sound, buzz and notify on new tasks (the
 * browser asks for permission only from a tap). */
function offer() {
  if (alertsState() !== "ask") return null;
  const box = h("div", { class: "inbox offer panel", id: "alerts-offer" },
    h("p", {}, t("inbox.alerts_offer")),
    h("div", { class: "row" },
      h("button", { type: "button", class: "primary", onclick: async () => {
        const state = await setAlerts(true);
        if (state !== "on") toast(t("inbox.alerts_refused"), true);
        box.remove();
      } }, t("inbox.alerts_on")),
      h("button", { type: "button", class: "quiet", onclick: async () => { await setAlerts(false); box.remove(); } },
        t("inbox.alerts_later"))));
  return box;
}

/** A new task for me: a sound, a buzz and a notification that opens it. */
function announce(task) {
  beep();
  vibrate();
  systemNotice({ tag: `gridwatch-task-${task.id}`, title: t("inbox.new_task"), body: title(task),
    href: `#/task/${task.id}`, red: task.severity === "red" });
}

export async function render(root, ctx) {
  const { live } = ctx;
  const list = h("div", { class: "inbox", id: "inbox" });
  const closed = h("div", { class: "inbox" });
  root.append(...[offer(), list, closed].filter(Boolean));
  const known = new Set(); // ids of tasks dispatched to me that I have been told of (or saw)
  const opened = new Set(); // tasks whose timeline is open: kept open when the list reloads

  async function load() {
    let open;
    let recent;
    try {
      [open, recent] = await Promise.all([
        api("/api/tasks", { params: { mine: true, open: true, limit: 100 } }),
        api("/api/tasks", { params: { mine: true, open: false, state: "closed", limit: 5 } }),
      ]);
    } catch (e) {
      toast(e.message, true);
      return;
    }
    open.items.sort(urgent);
    for (const task of open.items) known.add(task.id);
    const todo = open.items.filter((x) => TODO.includes(x.state));
    const waiting = open.items.filter((x) => !todo.includes(x));
    const card = (x) => taskCard(x, { me: ctx.me, done: load, opened });
    fill(list,
      h("h1", {}, t("inbox.heading"), h("span", { class: "muted" }, " ", t("inbox.todo", { count: todo.length }))),
      todo.length ? todo.map(card) : h("p", { class: "empty" }, t("inbox.empty")),
      waiting.length ? [h("h2", {}, t("inbox.waiting")), waiting.map(card)] : null);
    fill(closed, recent.items.length ? [h("h2", {}, t("inbox.closed")), recent.items.map(card)] : null);
  }

  const reload = debounce(load, 250);
  const onTask = (e) => {
    const task = e.detail;
    if (task.assignee === ctx.me.id && task.state === "dispatched" && !known.has(task.id)) {
      known.add(task.id);
      announce(task);
    } else if (task.assignee !== ctx.me.id) {
      known.delete(task.id); // reassigned away: if it comes back, it is news again
    }
    reload();
  };
  live.addEventListener("task", onTask);
  live.addEventListener("resync", reload);
  const ticker = setInterval(load, 60_000);
  await load();
  return () => {
    live.removeEventListener("task", onTask);
    live.removeEventListener("resync", reload);
    clearInterval(ticker);
  };
}
