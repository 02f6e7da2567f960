// The dispatcher's task board: every open task in the area, by stage, updated live.

import { api } from "../api.js";
import { debounce, h, toast } from "../dom.js";
import { t } from "../i18n.js";
import { taskCard, urgent } from "./taskcard.js";

const COLUMNS = [
  ["to_dispatch", ["reported", "returned"]],
  ["dispatched", ["dispatched"]],
  ["in_hand", ["accepted", "handling", "rework"]],
  ["to_check", ["feedback", "checking"]],
  ["suspended", ["suspended"]],
];

export async function render(root, ctx) {
  const { live } = ctx;
  const board = h("div", { class: "board" });
  const summary = h("span", { class: "muted", id: "tasks-summary" });
  root.append(h("div", { class: "row" }, h("h1", {}, t("dispatch.heading")), summary), board);
  const moved = new Set();
  const opened = new Set(); // tasks whose timeline is open: kept open when the board reloads

  async function load() {
    let tasks;
    try {
      // Each task carries its names (venue, device, assignee, grid): nothing else to fetch.
      tasks = (await api("/api/tasks", { params: { open: true, limit: 500 } })).items;
    } catch (e) {
      toast(e.message, true);
      return;
    }
    const flagged = tasks.filter((x) => x.flagged).length;
    summary.textContent = t("dispatch.summary", { count: tasks.length, flagged });
    board.replaceChildren(...COLUMNS.map(([column, states]) => {
      const mine = tasks.filter((x) => states.includes(x.state)).sort(urgent);
      return h("section", { class: "column", dataset: { column: states[0] } },
        h("h2", {}, h("span", {}, t(`dispatch.column.${column}`)), h("span", {}, mine.length)),
        mine.map((x) => taskCard(x, { me: ctx.me, done: load, moved: moved.has(x.id), pictureNow: false, opened })));
    }));
    moved.clear();
  }

  const reload = debounce(load, 250);
  const onTask = (e) => { moved.add(e.detail.id); reload(); };
  live.addEventListener("task", onTask);
  live.addEventListener("resync", reload);
  const ticker = setInterval(load, 60_000); // deadlines count down
  await load();
  return () => {
    live.removeEventListener("task", onTask);
    live.removeEventListener("resync", reload);
    clearInterval(ticker);
  };
}
