// The signed-in person's notification preferences (GET/PUT /api/v1/me/notify): the channels that
// reach them, in the order to try; quiet hours (never for red); the language of the messages.

import { api } from "../api.js";
import { alertsState, setAlerts } from "../alerts.js";
import { act, fill, h, toast } from "../dom.js";
import { LOCALES, label, t } from "../i18n.js";

const CHANNELS = ["console", "wecom", "dingtalk", "sms", "voice", "email"];
const channelLabel = (c) => label("prefs.channel", c);

export async function render(root) {
  const form = h("form", { class: "panel prefs", id: "notify-prefs", "aria-labelledby": "prefs-title" });
  root.append(h("h1", { id: "prefs-title" }, t("prefs.title")), form);
  let prefs;
  try {
    prefs = await api("/api/v1/me/notify");
  } catch (e) {
    fill(form, h("p", { class: "error" }, t("prefs.load_failed", { reason: e.message })));
    return;
  }
  // The person's channels in their order, then the others; those without a contact point
  // (no WeCom id, no phone) cannot be chosen.
  const mine = prefs.channels || [];
  const available = new Set(prefs.available || [...CHANNELS, ...mine]);
  const order = [...mine, ...CHANNELS.filter((c) => !mine.includes(c))];
  const chosen = new Set(mine);
  const list = h("ol", { class: "channels", id: "channels" });
  const error = h("p", { class: "error", role: "alert" });

  function move(channel, by) {
    const i = order.indexOf(channel);
    const j = i + by;
    if (j < 0 || j >= order.length) return;
    [order[i], order[j]] = [order[j], order[i]];
    showChannels();
    list.querySelector(`[data-channel=${channel}] button[data-move="${by < 0 ? "up" : "down"}"]`)?.focus();
  }

  function showChannels() {
    fill(list, order.map((c, i) => {
      const box = h("input", { type: "checkbox", id: `channel-${c}`, name: c, checked: chosen.has(c) && available.has(c),
        disabled: !available.has(c), onchange: () => (box.checked ? chosen.add(c) : chosen.delete(c)) });
      return h("li", { dataset: { channel: c } },
        h("label", { class: "inline", for: `channel-${c}` }, box, channelLabel(c)),
        available.has(c) ? null : h("span", { class: "muted small" }, t("prefs.no_contact")),
        h("span", { class: "spacer" }),
        h("button", { type: "button", class: "small quiet", dataset: { move: "up" }, disabled: i === 0,
          "aria-label": t("prefs.move_up", { channel: channelLabel(c) }), onclick: () => move(c, -1) }, "↑"),
        h("button", { type: "button", class: "small quiet", dataset: { move: "down" }, disabled: i === order.length - 1,
          "aria-label": t("prefs.move_down", { channel: channelLabel(c) }), onclick: () => move(c, 1) }, "↓"));
    }));
  }

  const quiet = prefs.quiet_hours;
  const quietOn = h("input", { type: "checkbox", id: "quiet-on", checked: Boolean(quiet),
    onchange: () => { from.disabled = to.disabled = !quietOn.checked; } });
  const from = h("input", { type: "time", id: "quiet-from", name: "from", value: quiet?.from || "22:00", disabled: !quiet });
  const to = h("input", { type: "time", id: "quiet-to", name: "to", value: quiet?.to || "07:00", disabled: !quiet });
  const language = h("select", { id: "language", name: "language" },
    LOCALES.map((v) => h("option", { value: v, lang: v, selected: v === prefs.language }, t(`shell.language.${v}`))));
  const alerts = h("button", { type: "button", id: "prefs-alerts" });
  const showAlerts = () => {
    const state = alertsState();
    alerts.textContent = t(state === "on" ? "prefs.alerts_off" : "prefs.alerts_on");
    alerts.disabled = state === "denied" || state === "unsupported";
    alerts.setAttribute("aria-pressed", String(state === "on"));
  };
  alerts.addEventListener("click", async () => {
    const state = await setAlerts(alertsState() !== "on");
    if (state === "denied") toast(t("notify.denied"), true);
    showAlerts();
  });
  const save = h("button", { class: "primary", type: "submit" }, t("common.save"));

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    error.textContent = "";
    act(save, async () => {
      const body = {
        channels: order.filter((c) => chosen.has(c) && available.has(c)),
        quiet_hours: quietOn.checked ? { from: from.value, to: to.value } : null,
        language: language.value,
      };
      if (prefs.timezone) body.timezone = prefs.timezone; // kept as it is
      try {
        prefs = await api("/api/v1/me/notify", { method: "PUT", body });
      } catch (err) {
        error.textContent = err.message;
        return;
      }
      toast(t("prefs.saved"));
      // The same language as the console's (people.language): the console follows it.
      window.dispatchEvent(new CustomEvent("gridwatch:language", { detail: prefs.language }));
    });
  });

  showChannels();
  showAlerts();
  fill(form,
    h("fieldset", {}, h("legend", {}, t("prefs.channels")),
      h("p", { class: "muted small" }, t("prefs.channels_explain")),
      list),
    h("fieldset", {}, h("legend", {}, t("prefs.quiet")),
      h("label", { class: "inline", for: "quiet-on" }, quietOn, t("prefs.quiet_between")),
      h("div", { class: "row" }, h("label", { class: "inline", for: "quiet-from" }, t("prefs.from")), from,
        h("label", { class: "inline", for: "quiet-to" }, t("prefs.to")), to),
      h("p", { class: "note small", id: "red-note" }, t("prefs.red_note"))),
    h("label", { for: "language" }, t("prefs.language")), language,
    h("fieldset", {}, h("legend", {}, t("prefs.device")),
      h("p", { class: "muted small" }, t("prefs.device_explain")),
      alerts),
    h("div", { class: "row" }, h("span", { class: "spacer" }), save), error);
}
