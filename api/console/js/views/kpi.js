// KPIs of an area and the areas under it, over a period, with charts. The rates count only
// the tasks people took; tasks that closed by themselves (the condition cleared before anyone
// acted) have their own column (casework/kpi.py says how each figure is counted).

import { api } from "../api.js";
import { barChart, h, toast } from "../dom.js";
import { duration, label, locale, number, percent, t } from "../i18n.js";

const PERIODS = [7, 30, 90];

export async function render(root, ctx) {
  const area = h("select", { id: "kpi-area", onchange: () => load() });
  const days = h("select", { id: "kpi-days", onchange: () => load() },
    PERIODS.map((d) => h("option", { value: d, selected: d === 30 }, t("kpi.days", { count: d }))));
  const table = h("tbody");
  const charts = h("div", { class: "grid-2" });
  const columns = ["area", "tasks", "accepted", "closed_by_people", "on_time", "rework", "closed_automatically",
    "closed_by_operator", "closed_after_hand_back", "time_to_accept", "time_to_close"];
  root.append(
    h("div", { class: "row" }, h("h1", {}, t("kpi.heading")), h("span", { class: "spacer" }),
      h("label", { for: "kpi-area", class: "inline" }, t("kpi.area")), area,
      h("label", { for: "kpi-days", class: "inline" }, t("kpi.period")), days),
    h("p", { class: "muted small", id: "kpi-explained" }, t("kpi.explained")),
    h("section", { class: "panel" }, h("table", { class: "responsive", id: "kpi", "aria-describedby": "kpi-explained" },
      h("caption", { class: "sr-only" }, t("kpi.caption")),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, t(`kpi.col.${c}`))))), table)),
    charts);

  try {
    const nodes = await api("/api/territory");
    area.replaceChildren(...nodes.filter((n) => n.level !== "grid")
      .map((n) => h("option", { value: n.id }, t("kpi.area_option", { name: n.name, level: label("kpi.level", n.level) }))));
  } catch (e) {
    toast(e.message, true);
    return;
  }

  const dayLabel = (d) => new Intl.DateTimeFormat(locale(), { month: "numeric", day: "numeric", timeZone: "UTC" })
    .format(new Date(`${d}T00:00:00Z`));
  // A rate with what it is out of: "75% (3/4)".
  const rate = (r, part, whole) => (r === null || r === undefined ? "–" : t("kpi.rate_of", { rate: percent(r), part, whole }));

  async function load() {
    let rows;
    let daily;
    try {
      const params = { area: area.value, days: days.value };
      [rows, daily] = await Promise.all([api("/api/kpi", { params }),
        api("/api/kpi/daily", { params })]);
    } catch (e) {
      toast(e.message, true);
      return;
    }
    const cell = (c, ...v) => h("td", { "data-label": t(`kpi.col.${c}`) }, ...v);
    table.replaceChildren(...rows.map((k, i) => h("tr", { class: i === 0 ? "total" : null, dataset: { area: k.territory_id } },
      h(i === 0 ? "th" : "td", { scope: "row" }, k.name, h("span", { class: "muted small" }, " ", label("kpi.level", k.level))),
      cell("tasks", number(k.tasks)),
      cell("accepted", rate(k.acceptance_rate, k.accepted, k.acceptance_base)),
      cell("closed_by_people", number(k.closed_by_people)),
      cell("on_time", rate(k.on_time_closure_rate, k.closed_on_time, k.closed_by_people)),
      cell("rework", rate(k.rework_rate, k.reworked, k.closed_by_people)),
      cell("closed_automatically", number(k.closed_automatically)),
      cell("closed_by_operator", number(k.closed_by_operator)),
      cell("closed_after_hand_back", number(k.closed_after_hand_back)),
      cell("time_to_accept", duration(k.mean_time_to_accept_s)),
      cell("time_to_close", duration(k.mean_time_to_close_s)))));
    const parts = rows.slice(1).length ? rows.slice(1) : rows;
    charts.replaceChildren(
      h("section", { class: "panel" }, h("h2", {}, t("kpi.chart.per_day")), barChart({
        label: t("kpi.chart.per_day"), labels: daily.map((d) => dayLabel(d.day)), axis: "count", format: number,
        series: [{ name: t("kpi.series.created"), values: daily.map((d) => d.created) },
          { name: t("kpi.series.closed"), values: daily.map((d) => d.closed), cls: "alt" },
          { name: t("kpi.series.closed_late"), values: daily.map((d) => d.closed_late), cls: "warn" },
          { name: t("kpi.series.closed_automatically"), values: daily.map((d) => d.closed_automatically), cls: "auto" }],
      })),
      h("section", { class: "panel" }, h("h2", {}, t("kpi.chart.rates")), barChart({
        label: t("kpi.chart.rates"), labels: parts.map((k) => k.name), axis: "rate", format: (v) => percent(v),
        series: [{ name: t("kpi.series.accepted"), values: parts.map((k) => k.acceptance_rate) },
          { name: t("kpi.series.on_time"), values: parts.map((k) => k.on_time_closure_rate), cls: "alt" },
          { name: t("kpi.series.reworked"), values: parts.map((k) => k.rework_rate), cls: "warn" }],
      })),
      h("section", { class: "panel" }, h("h2", {}, t("kpi.chart.times")), barChart({
        label: t("kpi.chart.times"), labels: parts.map((k) => k.name), axis: "time", format: duration,
        series: [{ name: t("kpi.series.to_accept"), values: parts.map((k) => k.mean_time_to_accept_s) },
          { name: t("kpi.series.to_close"), values: parts.map((k) => k.mean_time_to_close_s), cls: "alt" }],
      })));
  }

  await load();
}
