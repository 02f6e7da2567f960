// The dispatcher's task board: every open task in the area, by stage, updated live.

import { api } from "../api.js";
import { debounce, h, toast } from "../dom.js";
import { taskCard, urgent } from "./taskcard.js";

const COLUMNS = [
  ["To dispatch", ["reported", "returned"]],
  ["Dispatched", ["dispatched"]],
  ["In hand", ["accepted", "handling", "rework"]],
  ["To check", ["feedback", "checking"]],
  ["Suspended", ["suspended"]],
];

export async function render(root, ctx) {
  const { live } = ctx;
  const board = h("div", { class: "board" });
  const summary = h("span", { class: "muted" });
  root.append(h("div", { class: "row" }, h("h1", {}, "Tasks"), summary), board);
  const moved = new Set();
  let people = [];
  let territory = new Map();
  const names = { people: new Map(), areas: new Map() };

  /** Workers whose area holds the task's grid, those on duty and least busy first. */
  function candidates(task) {
    const inside = (p) => {
      for (let id = task.grid_id; id; id = territory.get(id)) if (id === p.scope_id) return true;
      return false;
    };
    return people.filter(inside).sort((a, b) => b.on_duty - a.on_duty || a.open_tasks - b.open_tasks);
  }

  async function load() {
    let tasks;
    try {
      // The tree does not change while the page is open; who holds how many tasks does.
      const nodes = territory.size ? null : api("/api/territory");
      [tasks, people] = await Promise.all([
        api("/api/tasks", { params: { open: true, limit: 500 } }).then((p) => p.items),
        api("/api/people", { params: { role: ["grid_worker", "department"] } }),
      ]);
      if (nodes) {
        const areas = await nodes;
        territory = new Map(areas.map((n) => [n.id, n.parent_id]));
        names.areas = new Map(areas.map((n) => [n.id, n.name]));
      }
      names.people = new Map(people.map((p) => [p.id, p.name]));
    } catch (e) {
      toast(e.message, true);
      return;
    }
    const flagged = tasks.filter((t) => t.flagged).length;
    summary.textContent = `${tasks.length} open · ${flagged} near or past their deadline`;
    board.replaceChildren(...COLUMNS.map(([title, states]) => {
      const mine = tasks.filter((t) => states.includes(t.state)).sort(urgent);
      return h("section", { class: "column", dataset: { column: states[0] } },
        h("h2", {}, h("span", {}, title), h("span", {}, mine.length)),
        mine.map((t) => taskCard(t, { me: ctx.me, people: candidates, names, done: load, moved: moved.has(t.id) })));
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
