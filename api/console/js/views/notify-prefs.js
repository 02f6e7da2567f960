// The signed-in person's notification preferences (GET/PUT /api/v1/me/notify): the channels that
// reach them, in the order to try; quiet hours (never for red); the language of the messages.

import { api } from "../api.js";
import { alertsState, setAlerts } from "../alerts.js";
import { act, fill, h, toast } from "../dom.js";

const CHANNELS = ["console", "wecom", "dingtalk", "sms", "voice", "email"];
const LABELS = {
  console: "In the console (the bell)", wecom: "WeCom (企业微信)", dingtalk: "DingTalk (钉钉)",
  sms: "SMS", voice: "Voice call", email: "E-mail", webhook: "Webhook (integrations)",
};
const LANGUAGES = [["zh-CN", "中文 (zh-CN)"], ["en", "English (en)"]];

export async function render(root) {
  const form = h("form", { class: "panel prefs", id: "notify-prefs", "aria-labelledby": "prefs-title" });
  root.append(h("h1", { id: "prefs-title" }, "Notifications"), form);
  let prefs;
  try {
    prefs = await api("/api/v1/me/notify");
  } catch (e) {
    fill(form, h("p", { class: "error" }, `Your preferences cannot be loaded: ${e.message}`));
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
        h("label", { class: "inline", for: `channel-${c}` }, box, LABELS[c] || c),
        available.has(c) ? null : h("span", { class: "muted small" }, "no contact point for it in the registry"),
        h("span", { class: "spacer" }),
        h("button", { type: "button", class: "small quiet", dataset: { move: "up" }, disabled: i === 0,
          "aria-label": `Move ${LABELS[c] || c} up`, onclick: () => move(c, -1) }, "↑"),
        h("button", { type: "button", class: "small quiet", dataset: { move: "down" }, disabled: i === order.length - 1,
          "aria-label": `Move ${LABELS[c] || c} down`, onclick: () => move(c, 1) }, "↓"));
    }));
  }

  const quiet = prefs.quiet_hours;
  const quietOn = h("input", { type: "checkbox", id: "quiet-on", checked: Boolean(quiet),
    onchange: () => { from.disabled = to.disabled = !quietOn.checked; } });
  const from = h("input", { type: "time", id: "quiet-from", name: "from", value: quiet?.from || "22:00", disabled: !quiet });
  const to = h("input", { type: "time", id: "quiet-to", name: "to", value: quiet?.to || "07:00", disabled: !quiet });
  const language = h("select", { id: "language", name: "language" },
    LANGUAGES.map(([v, label]) => h("option", { value: v, selected: v === prefs.language }, label)));
  const alerts = h("button", { type: "button", id: "prefs-alerts" });
  const showAlerts = () => {
    const state = alertsState();
    alerts.textContent = state === "on" ? "Turn off alerts on this device" : "Turn on alerts on this device";
    alerts.disabled = state === "denied" || state === "unsupported";
    alerts.setAttribute("aria-pressed", String(state === "on"));
  };
  alerts.addEventListener("click", async () => {
    const state = await setAlerts(alertsState() !== "on");
    if (state === "denied") toast("This browser refuses notifications for gridwatch: allow them in its site settings.", true);
    showAlerts();
  });
  const save = h("button", { class: "primary", type: "submit" }, "Save");

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
      toast("Notification preferences saved");
    });
  });

  showChannels();
  showAlerts();
  fill(form,
    h("fieldset", {}, h("legend", {}, "Channels, in the order to try"),
      h("p", { class: "muted small" }, "A notification goes to the first of your channels that works, the next one if it fails; red ones may go to several at once."),
      list),
    h("fieldset", {}, h("legend", {}, "Quiet hours"),
      h("label", { class: "inline", for: "quiet-on" }, quietOn, "No notifications between"),
      h("div", { class: "row" }, h("label", { class: "inline", for: "quiet-from" }, "from"), from,
        h("label", { class: "inline", for: "quiet-to" }, "to"), to),
      h("p", { class: "note small", id: "red-note" }, "Red notifications ignore quiet hours: they reach you at any time.")),
    h("label", { for: "language" }, "Language of the messages"), language,
    h("fieldset", {}, h("legend", {}, "This device"),
      h("p", { class: "muted small" }, "While the console is open: the browser's notifications, a sound and a vibration on red."),
      alerts),
    h("div", { class: "row" }, h("span", { class: "spacer" }), save), error);
}
