// The notification centre: the bell in the header with the unread count, and its panel. Loaded
// at sign-in (GET /api/v1/notifications), kept current by the live stream's `notification`
// events; a new one alerts (a browser notification, and for red a sound and a vibration).

import { api } from "./api.js";
import { alertsState, beep, setAlerts, systemNotice, vibrate } from "./alerts.js";
import { fill, h, severityChip, toast } from "./dom.js";
import { ago, stamp, t } from "./i18n.js";

const LIMIT = 30;

/** Where a notification leads inside the console. */
export function target(n) {
  if (n.task_id) return `#/task/${n.task_id}`;
  if (n.incident_id) return `#/incident/${n.incident_id}`;
  return null;
}

export class NotificationCentre {
  #live;
  #items = []; // newest first
  #unread = 0;
  #seen = new Set(); // ids already shown (the stream may resend after a reconnection)
  #bell = document.getElementById("bell");
  #count = document.getElementById("unread");
  #announce = document.getElementById("unread-live");
  #panel = document.getElementById("notifications");
  #list = document.getElementById("notification-list");
  #allRead = document.getElementById("all-read");
  #alerts = document.getElementById("alerts");
  #onEvent = (e) => this.#arrived(e.detail?.item || e.detail);
  #onResync = () => this.load();
  #onKey = (e) => {
    if (e.key === "Escape" && !this.#panel.hidden) {
      this.close();
      this.#bell.focus();
    }
  };
  #onOutside = (e) => {
    if (!this.#panel.hidden && !this.#panel.contains(e.target) && !this.#bell.contains(e.target)) this.close();
  };

  constructor(live) {
    this.#live = live;
    this.#bell.addEventListener("click", () => (this.#panel.hidden ? this.open() : this.close()));
    this.#allRead.addEventListener("click", () => this.read({ all: true }));
    this.#alerts.addEventListener("click", async () => {
      const state = await setAlerts(alertsState() !== "on");
      this.#showAlerts();
      if (state === "denied") toast(t("notify.denied"), true);
      else if (state === "unsupported") toast(t("notify.unsupported"), true);
    });
    document.addEventListener("keydown", this.#onKey);
    window.addEventListener("hashchange", () => this.close()); // another page: the panel goes
    document.addEventListener("click", this.#onOutside);
    // Its words come with relabel(), once the catalogue is loaded.
  }

  async start() {
    this.#live.addEventListener("notification", this.#onEvent);
    this.#live.addEventListener("resync", this.#onResync);
    this.#bell.hidden = false;
    await this.load();
  }

  stop() {
    this.#live.removeEventListener("notification", this.#onEvent);
    this.#live.removeEventListener("resync", this.#onResync);
    this.#items = [];
    this.#seen.clear();
    this.close();
    this.#setUnread(0);
  }

  async load() {
    let page;
    try {
      page = await api("/api/v1/notifications", { params: { limit: LIMIT } });
    } catch (e) {
      if (e.status !== 401) this.#bell.title = t("notify.load_failed", { reason: e.message });
      return;
    }
    this.#items = page.items;
    for (const n of page.items) this.#seen.add(n.id);
    this.#setUnread(page.unread);
    this.#render();
  }

  open() {
    this.#panel.hidden = false;
    this.#bell.setAttribute("aria-expanded", "true");
    this.#render();
    (this.#panel.querySelector("a, button:not(:disabled)") || this.#panel).focus();
  }

  close() {
    this.#panel.hidden = true;
    this.#bell.setAttribute("aria-expanded", "false");
  }

  /** Marks some read (`{ids}`) or all (`{all: true}`), on the server first. */
  async read(body) {
    try {
      await api("/api/v1/notifications/read", { method: "POST", body });
    } catch (e) {
      toast(e.message, true);
      return;
    }
    await this.load();
  }

  #arrived(n) {
    if (!n || n.id === undefined || this.#seen.has(n.id)) return;
    this.#seen.add(n.id);
    this.#items = [n, ...this.#items].slice(0, LIMIT);
    if (!n.read_at) this.#setUnread(this.#unread + 1);
    this.#render();
    if (n.read_at) return;
    const red = n.severity === "red";
    if (red) {
      beep();
      vibrate();
    }
    if (red || document.hidden) {
      systemNotice({ tag: `gridwatch-${n.id}`, title: n.title, body: n.body || "", href: target(n), red });
    }
  }

  /** The centre's words again, in the console's current language. */
  relabel() {
    this.#setUnread(this.#unread, false);
    this.#showAlerts();
    this.#render();
  }

  #setUnread(count, announce = true) {
    const changed = announce && count !== this.#unread;
    this.#unread = Math.max(0, count);
    this.#count.textContent = this.#unread > 99 ? "99+" : String(this.#unread);
    this.#count.hidden = this.#unread === 0;
    this.#bell.dataset.unread = String(this.#unread);
    const words = t("notify.unread", { count: this.#unread });
    this.#bell.setAttribute("aria-label", t("notify.bell", { unread: words }));
    this.#allRead.disabled = this.#unread === 0;
    if (changed) this.#announce.textContent = words; // read out by screen readers (aria-live)
  }

  #showAlerts() {
    const state = alertsState();
    this.#alerts.textContent = t({ on: "notify.alerts_off", denied: "notify.alerts_blocked", unsupported: "notify.alerts_unsupported" }[state] || "notify.alerts_on");
    this.#alerts.setAttribute("aria-pressed", String(state === "on"));
    this.#alerts.dataset.state = state;
  }

  #render() {
    if (this.#panel.hidden) return;
    fill(this.#list, this.#items.length ? this.#items.map((n) => this.#item(n))
      : h("li", { class: "empty" }, t("notify.none")));
  }

  #item(n) {
    const href = target(n);
    const title = href
      ? h("a", { href, onclick: () => { this.close(); if (!n.read_at) this.read({ ids: [n.id] }); } }, n.title)
      : n.link ? h("a", { href: n.link }, n.title) : h("span", {}, n.title);
    return h("li", { class: `notification ${n.read_at ? "read" : "unread"}`,
      dataset: { id: n.id, read: n.read_at ? "yes" : "no", severity: n.severity || "none" } },
    h("div", { class: "row" }, n.severity ? severityChip(n.severity) : null,
      h("span", { class: "title" }, title), h("span", { class: "spacer" }),
      h("time", { datetime: n.at, title: stamp(n.at), class: "muted small" }, ago(n.at))),
    n.body ? h("div", { class: "body small" }, n.body) : null,
    n.read_at ? null : h("button", { type: "button", class: "small quiet", "aria-label": t("notify.mark_read_label", { title: n.title }),
      onclick: () => this.read({ ids: [n.id] }) }, t("notify.mark_read")));
  }
}
