// A grid worker's inbox, made for a phone: my tasks, what to do next, one tap each.

import { api } from "../api.js";
import { debounce, fill, h, toast } from "../dom.js";
import { taskCard, urgent } from "./taskcard.js";

export async function render(root, ctx) {
  const { live } = ctx;
  const names = { people: new Map([[ctx.me.id, "you"]]) };
  const list = h("div", { class: "inbox", id: "inbox" });
  const closed = h("div", { class: "inbox" });
  root.append(list, closed);

  async function load() {
    let open;
    let recent;
    try {
      const areas = names.areas ? null : api("/api/territory"); // once: the tree does not change
      [open, recent] = await Promise.all([
        api("/api/tasks", { params: { mine: true, open: true, limit: 100 } }),
        api("/api/tasks", { params: { mine: true, open: false, state: "closed", limit: 5 } }),
      ]);
      if (areas) names.areas = new Map((await areas).map((a) => [a.id, a.name]));
    } catch (e) {
      toast(e.message, true);
      return;
    }
    open.items.sort(urgent);
    const todo = open.items.filter((t) => ["dispatched", "accepted", "handling", "rework"].includes(t.state));
    const waiting = open.items.filter((t) => !todo.includes(t));
    fill(list,
      h("h1", {}, "My tasks", h("span", { class: "muted" }, ` · ${todo.length} to do`)),
      todo.length ? todo.map((t) => taskCard(t, { me: ctx.me, names, done: load }))
        : h("p", { class: "empty" }, "Nothing to do. New tasks appear here by themselves."),
      waiting.length ? [h("h2", {}, "Waiting for the dispatcher"), waiting.map((t) => taskCard(t, { me: ctx.me, names, done: load }))] : null);
    fill(closed, recent.items.length ? [h("h2", {}, "Recently closed"), recent.items.map((t) => taskCard(t, { me: ctx.me, names, done: load }))] : null);
  }

  const reload = debounce(load, 250);
  live.addEventListener("task", reload);
  live.addEventListener("resync", reload);
  const ticker = setInterval(load, 60_000);
  await load();
  return () => {
    live.removeEventListener("task", reload);
    live.removeEventListener("resync", reload);
    clearInterval(ticker);
  };
}
