// The console's shell: sign-in, navigation by role, the live stream, the red-incident alarm, the
// notification centre and the person's menu.

import { beep, registerWorker, setSound, soundOn } from "./alerts.js";
import { Live, SUPERVISORS, api, session, signOut, silenced } from "./api.js";
import { h } from "./dom.js";
import { savedLocale, setLocale } from "./i18n.js";
import { NotificationCentre } from "./notify.js";
import * as board from "./views/board.js";
import * as emergency from "./views/emergency.js";
import * as inbox from "./views/inbox.js";
import * as incident from "./views/incident.js";
import * as kpi from "./views/kpi.js";
import * as login from "./views/login.js";
import * as notifyPrefs from "./views/notify-prefs.js";
import * as people from "./views/people.js";
import * as registry from "./views/registry.js";
import * as rejected from "./views/rejected.js";
import * as task from "./views/task.js";
import * as tasks from "./views/tasks.js";
import * as territory from "./views/territory.js";
import * as venue from "./views/venue.js";

const WORKERS = new Set(["grid_worker", "department"]);

// Pages: hash pattern, view, title, who sees it in the navigation.
const PAGES = [
  { path: /^board$/, view: board, nav: "Incidents", href: "#/board", roles: (r) => !WORKERS.has(r) },
  { path: /^territory$/, view: territory, nav: "Territory", href: "#/territory", roles: () => true },
  { path: /^tasks$/, view: tasks, nav: "Tasks", href: "#/tasks", roles: (r) => SUPERVISORS.has(r) },
  { path: /^inbox$/, view: inbox, nav: "My tasks", href: "#/inbox", roles: (r) => WORKERS.has(r) },
  { path: /^emergency$/, view: emergency, nav: "Emergency", href: "#/emergency", roles: (r) => r !== "grid_worker" },
  { path: /^kpi$/, view: kpi, nav: "KPIs", href: "#/kpi", roles: (r) => !WORKERS.has(r) },
  { path: /^rejected$/, view: rejected, nav: "Rejected", href: "#/rejected", roles: (r) => r === "admin" },
  { path: /^people$/, view: people, nav: "People", href: "#/people", roles: (r) => r === "admin" },
  { path: /^registry(?:\/([a-z]+))?$/, view: registry, nav: "Registry", href: "#/registry", roles: (r) => r === "admin" },
  { path: /^venue\/([A-Za-z0-9_.-]+)$/, view: venue },
  { path: /^task\/(\d+)(?:\?for=([A-Za-z0-9_.-]+))?$/, view: task, title: "task" }, // a message's link adds ?for=
  { path: /^incident\/(\d+)$/, view: incident, title: "incident" },
  { path: /^settings\/notifications$/, view: notifyPrefs, title: "notifications" },
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
    cleanup = login.render(root, { onSignedIn: start });
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
    document.title = `gridwatch · ${page.nav || page.title || "venue"}`;
    const done = (await page.view.render(root, ctx, ...match.slice(1))) || null;
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
        h("p", { class: "error" }, `Cannot reach gridwatch (${e.message}); trying again…`));
      setTimeout(start, 5000);
    }
    return;
  }
  if (ctx.me.language) await setLocale(ctx.me.language);
  document.getElementById("me").textContent = `${ctx.me.name} · ${ctx.me.role.replace("_", " ")}`;
  const nav = document.getElementById("nav");
  nav.replaceChildren(...PAGES.filter((p) => p.nav && p.roles(ctx.me.role))
    .map((p) => h("a", { href: p.href }, p.nav)));
  showChrome(true);
  live.start();
  centre.start();
  if (!location.hash || location.hash === "#/" || location.hash === "#/login") location.hash = home(ctx.me.role);
  else route();
}

function showChrome(on) {
  document.getElementById("top").hidden = !on;
  if (!on) quiet();
}

// ---- the alarm: a new red incident flashes the page and sounds, unless silenced ----

const seen = new Set();

function quiet() {
  document.getElementById("alarm").hidden = true;
  document.body.classList.remove("alarm");
  document.title = "gridwatch";
}

function alarm(incident) {
  const banner = document.getElementById("alarm");
  banner.replaceChildren(
    h("span", {}, `RED · ${incident.title}`),
    incident.venue_id
      ? h("a", { href: `#/venue/${incident.venue_id}` }, incident.venue_id)
      : h("a", { href: "#/" }, "platform"), // the platform's own outage: no venue
    h("span", { class: "spacer" }),
    h("button", { class: "small", type: "button", onclick: quiet }, "dismiss"),
  );
  banner.hidden = false;
  document.body.classList.remove("alarm");
  void document.body.offsetWidth; // restart the animation
  document.body.classList.add("alarm");
  document.title = `● RED · ${incident.title}`;
  beep();
}

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
  el.textContent = state;
  el.title = state === "offline" ? "the server or its database cannot be reached; retrying" : "live updates";
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
  b.textContent = soundOn() ? "sound on" : "sound off";
  b.setAttribute("aria-pressed", String(soundOn()));
  b.title = "sound on red incidents and red notifications";
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
showSound();
registerWorker();
await setLocale(savedLocale());
route();
