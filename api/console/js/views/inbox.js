// A grid worker's inbox, made for a phone: my tasks, what to do next, one tap each.

import { alertsState, setAlerts } from "../alerts.js";
import { api } from "../api.js";
import { debounce, fill, h, toast } from "../dom.js";
import { taskCard, urgent } from "./taskcard.js";

/** On a phone that was never asked: an offer to sound, buzz and notify on new red tasks (the
 * browser asks for permission only from a tap). */
function offer() {
  if (alertsState() !== "ask") return null;
  const box = h("div", { class: "inbox offer panel", id: "alerts-offer" },
    h("p", {}, "Get a sound, a vibration and a notification when a red task comes in while this page is open."),
    h("div", { class: "row" },
      h("button", { type: "button", class: "primary", onclick: async () => {
        const state = await setAlerts(true);
        if (state !== "on") toast("Alerts stay off: this browser refuses notifications for gridwatch (its site settings can allow them).", true);
        box.remove();
      } }, "Turn on alerts"),
      h("button", { type: "button", class: "quiet", onclick: async () => { await setAlerts(false); box.remove(); } }, "Not now")));
  return box;
}

export async function render(root, ctx) {
  const { live } = ctx;
  const names = { people: new Map([[ctx.me.id, "you"]]) };
  const list = h("div", { class: "inbox", id: "inbox" });
  const closed = h("div", { class: "inbox" });
  root.append(...[offer(), list, closed].filter(Boolean));

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
