// The API client: the signed-in session, JSON requests with clear errors, and the live stream.
// Every request says the console's language (Accept-Language), so the API's messages follow it.

import { locale, t } from "./i18n.js";

const KEY = "gridwatch.session";

export const session = {
  get() {
    try {
      const s = JSON.parse(localStorage.getItem(KEY) || "null");
      return s && s.expires > Date.now() ? s : null;
    } catch {
      return null;
    }
  },
  set(token, expiresIn) {
    localStorage.setItem(KEY, JSON.stringify({ token, expires: Date.now() + expiresIn * 1000 }));
  },
  clear() {
    localStorage.removeItem(KEY);
  },
};

export class ApiError extends Error {
  constructor(status, error, detail, body = null) {
    super(detail || error || t("common.http_error", { status }));
    this.status = status;
    this.error = error;
    this.body = body; // the whole answer: a 409's `current` record, a 422's `field`
  }
}

// Answers that mean the server or its database cannot serve now (not a refusal of the request).
const UNAVAILABLE = new Set([502, 503, 504]);

/** Tells the page whether the last request reached a working server (`gridwatch:server`). */
function serverState(up) {
  window.dispatchEvent(new CustomEvent("gridwatch:server", { detail: up }));
}

/** A request to the API; the parsed JSON, or an ApiError with the server's reason. */
export async function api(path, { method = "GET", body, params } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === "") continue;
    for (const one of Array.isArray(v) ? v : [v]) url.searchParams.append(k, one);
  }
  const headers = { Accept: "application/json", "Accept-Language": locale() };
  const s = session.get();
  if (s) headers.Authorization = `Bearer ${s.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    serverState(false);
    throw new ApiError(0, "unreachable", t("common.unreachable", { reason: e.message }));
  }
  serverState(!UNAVAILABLE.has(response.status));
  const data = (response.headers.get("content-type") || "").includes("json") ? await response.json() : null;
  if (response.status === 401 && path !== "/api/token") {
    session.clear();
    window.dispatchEvent(new Event("gridwatch:signed-out"));
  }
  if (!response.ok) throw new ApiError(response.status, data?.error, data?.message || data?.detail, data);
  return data;
}

export async function signIn(username, password) {
  const response = await fetch("/api/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", "Accept-Language": locale() },
    body: new URLSearchParams({ username, password }),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data?.error, data?.message || data?.detail);
  session.set(data.access_token, data.expires_in);
}

/** Sign out on the server (the token counts no more, anywhere), then forget it here. */
export async function signOut() {
  try {
    if (session.get()) await api("/api/sign-out", { method: "POST" });
  } catch {
    // Unreachable or already expired: the token is forgotten here all the same.
  } finally {
    session.clear();
  }
}

/**
 * The live stream (Server-Sent Events) as an EventTarget: `incident`, `task` and `presence`
 * events carry the changed row, `emergency` an area's emergency started or ended, `notification` a new notification of the signed-in person;
 * `state` says connecting / live / reconnecting / offline; `resync`
 * fires after a reconnection, when views should reload what they show. A ticket opens one
 * connection only, so every reconnection asks for a new ticket and resumes after the last event
 * seen (`?after=`); the browser's own retry, which would reuse the ticket, is never left to run.
 */
export class Live extends EventTarget {
  #source = null;
  #retry = null;
  #opened = false;
  #last = null; // the id of the last event seen, to resume from
  #delay = 500; // before the next reconnection; grows while the server keeps failing

  /** Opens the stream with a fresh single-use ticket (the URL carries no access token). */
  async start() {
    this.stop();
    if (!session.get()) return;
    this.#state(this.#opened ? "reconnecting" : "connecting");
    let ticket;
    try {
      ticket = (await api("/api/live/ticket", { method: "POST" })).ticket;
    } catch {
      this.#down(); // a 401 has signed the console out already; otherwise try again soon
      return;
    }
    if (!session.get()) return;
    // lang: the titles the server renders into the stream follow the person's language.
    const params = new URLSearchParams({ ticket, lang: locale() });
    if (this.#last !== null) params.set("after", this.#last);
    const source = new EventSource(`/api/live?${params}`);
    this.#source = source;
    for (const kind of ["incident", "task", "presence", "notification", "emergency"]) {
      source.addEventListener(kind, (e) => {
        this.#last = e.lastEventId || this.#last;
        this.dispatchEvent(new CustomEvent(kind, { detail: JSON.parse(e.data) }));
      });
    }
    source.onopen = () => {
      if (this.#opened) this.dispatchEvent(new Event("resync"));
      this.#opened = true;
      this.#delay = 500;
      this.#state("live");
    };
    source.onerror = () => {
      // Dropped, ended by the server (its session ended) or refused: a new ticket, soon.
      source.close();
      this.#source = null;
      this.#state("reconnecting");
      this.#later(this.#delay);
      this.#delay = Math.min(this.#delay * 2, 10_000);
    };
  }

  stop() {
    clearTimeout(this.#retry);
    if (this.#source) this.#source.close();
    this.#source = null;
  }

  #later(ms) {
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => (session.get() ? this.start() : null), ms);
  }

  #down() {
    this.stop();
    this.#state("offline");
    this.#later(3000);
  }

  #state(state) {
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }
}

/** Roles that run an area's work: dispatch and check tasks, change incidents, command devices
 * (casework.tasks.SUPERVISORS). */
export const SUPERVISORS = new Set(["admin", "operator", "dispatcher"]);

/** Whether consoles keep quiet about an incident for now. */
export function silenced(incident) {
  return Boolean(incident.silenced_until) && new Date(incident.silenced_until) > new Date();
}

/** Commands that will not change any more. */
export const FINAL_COMMAND_STATES = new Set(["done", "failed", "rejected", "expired"]);

let venueCache = { at: 0, names: null, zones: null };

async function loadVenues() {
  if (!venueCache.names || Date.now() - venueCache.at > 60_000) {
    const venues = await api("/api/venues");
    venueCache = { at: Date.now(), names: new Map(venues.map((v) => [v.id, v.name])),
      zones: new Map(venues.map((v) => [v.id, v.timezone])) };
  }
  return venueCache;
}

/** Venue names by id, cached for a minute (names rarely change). */
export async function venueNames() {
  return (await loadVenues()).names;
}

/** Venues' time zones by id (times of a venue are shown in its zone), cached like the names. */
export async function venueZones() {
  return (await loadVenues()).zones;
}

/** An image (or other file) from the API, as an object URL for an <img>. */
export async function objectUrl(path) {
  const s = session.get();
  const headers = { "Accept-Language": locale() };
  if (s) headers.Authorization = `Bearer ${s.token}`;
  const response = await fetch(path, { headers });
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    throw new ApiError(response.status, data?.error, data?.message || data?.detail);
  }
  return URL.createObjectURL(await response.blob());
}
