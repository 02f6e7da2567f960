// The console's shell: sign-in, navigation by role, the live stream, the red-incident alarm, the
// emergency banner, the notification centre and the person's menu (with the language switch).
// Every word comes from the catalogues (i18n.js); index.html's static texts carry data-i18n keys.

import { beep, registerWorker, setSound, soundOn } from "./alerts.js";
import { Live, SUPERVISORS, api, session, signOut, silenced, venueNames } from "./api.js";
import { debounce, h, toast } from "./dom.js";
import { LOCALES, label, locale, savedLocale, setLocale, setZone, t, title } from "./i18n.js";
import { NotificationCentre } from "./notify.js";
import * as login from "./views/login.js";

const WORKERS = new Set(["grid_worker", "department"]);

// Pages: hash pattern, view (its module, loaded when the page is first opened: a worker's phone
// never fetches the registry's code), the catalogue key of its name (nav.*), who sees it in the
// navigation.
const PAGES = [
  { path: /^board$/, view: () => import("./views/board.js"), nav: "nav.board", href: "#/board", roles: (r) => !WORKERS.has(r) },
  { path: /^territory$/, view: () => import("./views/territory.js"), nav: "nav.territory", href: "#/territory", roles: () => true },
  { path: /^tasks$/, view: () => import("./views/tasks.js"), nav: "nav.tasks", href: "#/tasks", roles: (r) => SUPERVISORS.has(r) },
  { path: /^inbox$/, view: () => import("./views/inbox.js"), nav: "nav.inbox", href: "#/inbox", roles: (r) => WORKERS.has(r) },
  { path: /^emergency$/, view: () => import("./views/emergency.js"), nav: "nav.emergency", href: "#/emergency", roles: (r) => r !== "grid_worker" },
  { path: /^kpi$/, view: () => import("./views/kpi.js"), nav: "nav.kpi", href: "#/kpi", roles: (r) => !WORKERS.has(r) },
  { path: /^rejected$/, view: () => import("./views/rejected.js"), nav: "nav.rejected", href: "#/rejected", roles: (r) => r === "admin" },
  { path: /^people$/, view: () => import("./views/people.js"), nav: "nav.people", href: "#/people", roles: (r) => r === "admin" },
  { path: /^registry(?:\/([a-z]+))?$/, view: () => import("./views/registry.js"), nav: "nav.registry", href: "#/registry", roles: (r) => r === "admin" },
  { path: /^venue\/([A-Za-z0-9_.-]+)$/, view: () => import("./views/venue.js"), name: "nav.venue" },
  { path: /^task\/(\d+)(?:\?for=([A-Za-z0-9_.-]+))?$/, view: () => import("./views/task.js"), name: "nav.task" }, // a message's link adds ?for=
  { path: /^incident\/(\d+)$/, view: () => import("./views/incident.js"), name: "nav.incident" },
  { path: /^settings\/notifications$/, view: () => import("./views/notify-prefs.js"), name: "nav.notifications" },
];

const live = new Live();
const ctx = { me: null, live };
const centre = new NotificationCentre(live);
let cleanup = null;
let navigation = 0; // which route() is current: a slow page must not outlive a newer one

function home(role) {
  if (WORKERS.has(role)) return "#/inbox";
  if (role === "dispatcher") return "#/tasks";
  return "#/board";
}

async function route() {
  const mine = ++navigation;
  if (cleanup) cleanup();
  cleanup = null;
  const root = document.getElementById("view");
  root.replaceChildren();
  if (!session.get()) {
    showChrome(false);
    live.stop();
    centre.stop();
    cleanup = login.render(root, { onSignedIn: start, onLanguage: chooseLanguage });
    return;
  }
  if (!ctx.me) {
    await start();
    return;
  }
  const hash = location.hash.replace(/^#\/?/, "");
  for (const page of PAGES) {
    const match = hash.match(page.path);
    if (!match || (page.roles && !page.roles(ctx.me.role))) continue;
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", a.getAttribute("href") === `#/${hash}`);
    }
    document.title = t("shell.page_title", { page: t(page.nav || page.name) });
    const view = await page.view();
    if (mine !== navigation) return; // navigated away while its code loaded
    const done = (await view.render(root, ctx, ...match.slice(1))) || null;
    if (mine === navigation) cleanup = done;
    else if (done) done(); // navigated away while it loaded: stop it now
    return;
  }
  location.hash = home(ctx.me.role);
}

async function start() {
  try {
    ctx.me = await api("/api/me");
  } catch (e) {
    ctx.me = null;
    if (e.status === 401) {
      session.clear();
      route();
    } else {
      // The server is unreachable or failing: keep the session and try again shortly.
      document.getElementById("view").replaceChildren(
        h("p", { class: "error" }, t("shell.unreachable", { reason: e.message })));
      setTimeout(start, 5000);
    }
    return;
  }
  // The person's own choice, once made; until then the browser's language (or the last one
  // used on this browser) stays.
  if (ctx.me.language_chosen) await setLocale(ctx.me.language);
  setZone(ctx.me.timezone);
  showStatic();
  showChrome(true);
  live.start();
  centre.start();
  emergencies.start();
  if (!location.hash || location.hash === "#/" || location.hash === "#/login") location.hash = home(ctx.me.role);
  else route();
}

function showChrome(on) {
  document.getElementById("top").hidden = !on;
  if (!on) {
    quiet();
    emergencies.stop();
  }
}

/** The shell's words in the current language: index.html's data-i18n texts, the navigation,
 * the person, the live state, the sound button, the language switch. */
function showStatic() {
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  for (const el of document.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  if (ctx.me) {
    document.getElementById("me").textContent = t("shell.me", { name: ctx.me.name, role: label("role", ctx.me.role) });
    document.getElementById("nav").replaceChildren(...PAGES.filter((p) => p.nav && p.roles(ctx.me.role))
      .map((p) => h("a", { href: p.href }, t(p.nav))));
  }
  showLanguages();
  showLiveState();
  showSound();
  centre.relabel();
  emergencies.show();
}

// ---- the language: the person's, stored; before sign-in the browser's or the last used here ----

function showLanguages() {
  const box = document.getElementById("languages");
  box.replaceChildren(...LOCALES.map((l) => h("button", {
    type: "button", class: "quiet", lang: l, dataset: { locale: l }, "aria-pressed": String(l === locale()),
    onclick: () => chooseLanguage(l),
  }, t(`shell.language.${l}`))));
}

/** Switches the console's language; stored for the signed-in person (PUT /api/me/language). */
async function chooseLanguage(wanted) {
  if (wanted === locale()) return;
  if (ctx.me) {
    try {
      ctx.me = await api("/api/me/language", { method: "PUT", body: { language: wanted } });
    } catch (e) {
      toast(e.message, true);
      return;
    }
  }
  await setLocale(wanted);
  showStatic();
  menu(false);
  route(); // the page again, in the new language
}
window.addEventListener("gridwatch:language", (e) => {
  // Another page changed the person's language (the notification preferences): follow it.
  if (ctx.me) ctx.me.language = e.detail;
  if (e.detail !== locale()) setLocale(e.detail).then(() => { showStatic(); route(); });
});

// ---- the alarm: a new red incident flashes the page and sounds, unless silenced ----

const seen = new Set();

function quiet() {
  document.getElementById("alarm").hidden = true;
  document.body.classList.remove("alarm");
  document.title = t("shell.brand");
}

async function alarm(incident) {
  const banner = document.getElementById("alarm");
  let names = new Map();
  try {
    names = incident.venue_id ? await venueNames() : names;
  } catch {
    // the venue's id is shown instead
  }
  const what = title(incident);
  banner.replaceChildren(
    h("span", {}, t("shell.alarm", { title: what })),
    incident.venue_id
      ? h("a", { href: `#/venue/${incident.venue_id}` }, names.get(incident.venue_id) || incident.venue_id)
      : h("a", { href: `#/incident/${incident.id}` }, t("shell.platform")), // the platform's own outage: no venue
    h("span", { class: "spacer" }),
    h("button", { class: "small", type: "button", onclick: quiet }, t("shell.dismiss")),
  );
  banner.hidden = false;
  document.body.classList.remove("alarm");
  void document.body.offsetWidth; // restart the animation
  document.body.classList.add("alarm");
  document.title = `● ${t("shell.alarm", { title: what })}`;
  beep();
}

// ---- the emergency banner: on every page while an area in the person's scope is in emergency ----

const emergencies = {
  active: [],
  timer: null,
  async load() {
    if (!ctx.me) return;
    try {
      this.active = (await api("/api/emergencies")).filter((e) => !e.ended_at);
    } catch {
      return; // kept as it was; the next poll tries again
    }
    this.show();
  },
  start() {
    this.stop();
    this.load();
    // The live stream says when one starts or ends (`emergency`); the poll is a safety net.
    this.timer = setInterval(() => this.load(), 60_000);
  },
  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.active = [];
    this.show();
  },
  show() {
    const banner = document.getElementById("emergency-banner");
    if (!banner) return;
    banner.hidden = !this.active.length;
    document.body.classList.toggle("in-emergency", this.active.length > 0);
    if (!this.active.length) return banner.replaceChildren();
    const areas = this.active.map((e) => e.territory_name || e.territory_id).join(t("common.list_separator"));
    const may = ctx.me && ctx.me.role !== "grid_worker";
    banner.replaceChildren(
      h("strong", {}, t("shell.emergency", { count: this.active.length, areas })),
      h("span", { class: "small" }, this.active[0].reason),
      h("span", { class: "spacer" }),
      may ? h("a", { href: "#/emergency" }, t("shell.emergency_link")) : null);
  },
};
// A change made on the emergency page shows at once; a rule's proposal confirmed, too.
window.addEventListener("gridwatch:emergency", () => emergencies.load());
live.addEventListener("resync", () => emergencies.load()); // back after a break: look again
// Started or ended where it covers this person (one event per person, a burst when several).
live.addEventListener("emergency", debounce(() => emergencies.load(), 300));

live.addEventListener("incident", (e) => {
  const i = e.detail;
  if (i.severity === "red" && i.status === "open" && !silenced(i) && !seen.has(i.id) && !WORKERS.has(ctx.me?.role)) {
    alarm(i);
  }
  seen.add(i.id);
});

// The header says what is true: "live" only while the stream is open and requests work; an
// action that finds no server or no database shows "offline" until a request succeeds again.
let streamState = "connecting";
let serverUp = true;

function showLiveState() {
  const state = streamState === "live" && !serverUp ? "offline" : streamState;
  const el = document.getElementById("live-state");
  el.dataset.state = state;
  el.textContent = t(`shell.live.${state}`);
  el.title = t(state === "offline" ? "shell.live_offline_title" : "shell.live_title");
}

live.addEventListener("state", (e) => {
  streamState = e.detail;
  if (streamState === "live") serverUp = true; // the stream's opening needed both
  showLiveState();
});
window.addEventListener("gridwatch:server", (e) => {
  if (serverUp === e.detail) return;
  serverUp = e.detail;
  showLiveState();
});

function showSound() {
  const b = document.getElementById("sound");
  b.textContent = t(soundOn() ? "shell.sound_on" : "shell.sound_off");
  b.setAttribute("aria-pressed", String(soundOn()));
  b.title = t("shell.sound_title");
}

document.getElementById("sound").addEventListener("click", () => {
  setSound(!soundOn()); // on a click, so the browser lets it play
  showSound();
});

// ---- the person's menu ----

const menuButton = document.getElementById("me-menu");
const menuItems = document.getElementById("me-items");

function menu(open) {
  menuItems.hidden = !open;
  menuButton.setAttribute("aria-expanded", String(open));
}

menuButton.addEventListener("click", () => {
  menu(menuItems.hidden);
  if (!menuItems.hidden) menuItems.querySelector("a").focus();
});
menuItems.addEventListener("click", () => menu(false));
document.addEventListener("click", (e) => {
  if (!menuItems.hidden && !menuItems.contains(e.target) && !menuButton.contains(e.target)) menu(false);
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !menuItems.hidden) {
    menu(false);
    menuButton.focus();
  }
});

// A tapped notification from the service worker: go to its page.
navigator.serviceWorker?.addEventListener("message", (e) => {
  if (typeof e.data?.open === "string" && e.data.open.startsWith("#/")) location.hash = e.data.open;
});

document.getElementById("sign-out").addEventListener("click", async () => {
  live.stop();
  await signOut(); // the token counts no more on the server, not only here
  ctx.me = null;
  location.hash = "#/login";
  route();
});

window.addEventListener("gridwatch:signed-out", () => {
  ctx.me = null;
  route();
});
window.addEventListener("hashchange", route);
registerWorker();
await setLocale(savedLocale());
showStatic();
route();
