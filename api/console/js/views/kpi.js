// KPIs of an area and the areas under it, over a period, with charts.

import { api } from "../api.js";
import { barChart, h, toast } from "../dom.js";
import { duration, percent } from "../i18n.js";

export async function render(root) {
  const area = h("select", { "aria-label": "area", onchange: () => load() });
  const days = h("select", { "aria-label": "period", onchange: () => load() },
    [[7, "7 days"], [30, "30 days"], [90, "90 days"]].map(([d, t]) => h("option", { value: d, selected: d === 30 }, t)));
  const table = h("tbody");
  const charts = h("div", { class: "grid-2" });
  root.append(h("div", { class: "row" }, h("h1", {}, "KPIs"), h("span", { class: "spacer" }), area, days),
    h("section", { class: "panel" }, h("table", { class: "responsive", id: "kpi" },
      h("thead", {}, h("tr", {}, ["Area", "Tasks", "Accepted", "Closed", "On time", "Rework", "Time to accept", "Time to close"]
        .map((t) => h("th", {}, t)))), table)),
    charts);

  try {
    const nodes = await api("/api/territory");
    area.replaceChildren(...nodes.filter((n) => n.level !== "grid")
      .map((n) => h("option", { value: n.id }, `${n.name} (${n.level})`)));
  } catch (e) {
    toast(e.message, true);
    return;
  }

  async function load() {
    let rows;
    let daily;
    try {
      const params = { area: area.value, days: days.value };
      [rows, daily] = await Promise.all([api("/api/kpi", { params }), api("/api/kpi/daily", { params })]);
    } catch (e) {
      toast(e.message, true);
      return;
    }
    table.replaceChildren(...rows.map((k, i) => h("tr", { class: i === 0 ? "total" : null },
      h("td", {}, i === 0 ? h("b", {}, k.name) : k.name, h("span", { class: "muted small" }, ` ${k.level}`)),
      h("td", {}, k.tasks), h("td", {}, percent(k.acceptance_rate)), h("td", {}, k.closed),
      h("td", {}, percent(k.on_time_closure_rate)), h("td", {}, percent(k.rework_rate)),
      h("td", {}, duration(k.mean_time_to_accept_s)), h("td", {}, duration(k.mean_time_to_close_s)))));
    const parts = rows.slice(1).length ? rows.slice(1) : rows;
    const short = (d) => new Date(`${d}T00:00:00Z`).toLocaleDateString([], { month: "short", day: "numeric" });
    charts.replaceChildren(
      h("section", { class: "panel" }, h("h2", {}, "Tasks per day"), barChart({
        label: "tasks per day", labels: daily.map((d) => short(d.day)),
        series: [{ name: "created", values: daily.map((d) => d.created) },
          { name: "closed", values: daily.map((d) => d.closed), cls: "alt" },
          { name: "closed late", values: daily.map((d) => d.closed_late), cls: "warn" }],
      })),
      h("section", { class: "panel" }, h("h2", {}, "Rates by area"), barChart({
        label: "rates by area", labels: parts.map((k) => k.name),
        series: [{ name: "accepted", values: parts.map((k) => k.acceptance_rate) },
          { name: "closed on time", values: parts.map((k) => k.on_time_closure_rate), cls: "alt" },
          { name: "reworked", values: parts.map((k) => k.rework_rate), cls: "warn" }],
        format: (v) => `${Math.round(v * 100)}%`,
      })),
      h("section", { class: "panel" }, h("h2", {}, "Mean time to accept and to close"), barChart({
        label: "time to accept and to close", labels: parts.map((k) => k.name),
        series: [{ name: "to accept", values: parts.map((k) => k.mean_time_to_accept_s) },
          { name: "to close", values: parts.map((k) => k.mean_time_to_close_s), cls: "alt" }],
        format: duration,
      })));
  }

  await load();
}
