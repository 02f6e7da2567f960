// The API client: the signed-in session, JSON requests with clear errors, and the live stream.

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
  constructor(status, error, detail) {
    super(detail || error || `HTTP ${status}`);
    this.status = status;
    this.error = error;
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
  const headers = { Accept: "application/json" };
  const s = session.get();
  if (s) headers.Authorization = `Bearer ${s.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    serverState(false);
    throw new ApiError(0, "unreachable", `the server cannot be reached (${e.message})`);
  }
  serverState(!UNAVAILABLE.has(response.status));
  const data = (response.headers.get("content-type") || "").includes("json") ? await response.json() : null;
  if (response.status === 401 && path !== "/api/token") {
    session.clear();
    window.dispatchEvent(new Event("gridwatch:signed-out"));
  }
  if (!response.ok) throw new ApiError(response.status, data?.error, data?.detail);
  return data;
}

export async function signIn(username, password) {
  const response = await fetch("/api/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ username, password }),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data?.error, data?.detail);
  session.set(data.access_token, data.expires_in);
}

/**
 * The live stream (Server-Sent Events) as an EventTarget: `incident`, `task` and `presence`
 * events carry the changed row; `state` says connecting / live / reconnecting / offline; `resync`
 * fires after a reconnection, when views should reload what they show. The browser reconnects
 * by itself while the ticket is good; after that a new ticket resumes from the last event seen.
 */
export class Live extends EventTarget {
  #source = null;
  #retry = null;
  #opened = false;
  #last = null; // the id of the last event seen, to resume from after a fresh start

  /** Opens the stream with a fresh one-minute ticket (the URL carries no access token). */
  async start() {
    this.stop();
    if (!session.get()) return;
    this.#state(this.#opened ? "reconnecting" : "connecting");
    let ticket;
    try {
      ticket = (await api("/api/live/ticket", { method: "POST" })).ticket;
    } catch {
      this.#down();
      return;
    }
    const params = new URLSearchParams({ ticket });
    if (this.#last !== null) params.set("after", this.#last);
    const source = new EventSource(`/api/live?${params}`);
    this.#source = source;
    for (const kind of ["incident", "task", "presence"]) {
      source.addEventListener(kind, (e) => {
        this.#last = e.lastEventId || this.#last;
        this.dispatchEvent(new CustomEvent(kind, { detail: JSON.parse(e.data) }));
      });
    }
    source.onopen = () => {
      if (this.#opened) this.dispatchEvent(new Event("resync"));
      this.#opened = true;
      this.#state("live");
    };
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) {
        this.#state("reconnecting"); // the browser retries by itself, with Last-Event-ID
        return;
      }
      this.#down(); // refused (its ticket expired) or the server is gone: a new ticket, soon
    };
  }

  stop() {
    clearTimeout(this.#retry);
    if (this.#source) this.#source.close();
    this.#source = null;
  }

  #down() {
    this.stop();
    this.#state("offline");
    this.#retry = setTimeout(() => (session.get() ? this.start() : null), 3000);
  }

  #state(state) {
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }
}

/** Roles that run an area's work: dispatch and check tasks, change incidents, command devices
 * (ingest.tasks.SUPERVISORS). */
export const SUPERVISORS = new Set(["admin", "operator", "dispatcher"]);

/** Whether consoles keep quiet about an incident for now. */
export function silenced(incident) {
  return Boolean(incident.silenced_until) && new Date(incident.silenced_until) > new Date();
}

/** Commands that will not change any more. */
export const FINAL_COMMAND_STATES = new Set(["done", "failed", "rejected", "expired"]);

let venueCache = { at: 0, names: null };

/** Venue names by id, cached for a minute (names rarely change). */
export async function venueNames() {
  if (!venueCache.names || Date.now() - venueCache.at > 60_000) {
    const venues = await api("/api/venues");
    venueCache = { at: Date.now(), names: new Map(venues.map((v) => [v.id, v.name])) };
  }
  return venueCache.names;
}

/** An image (or other file) from the API, as an object URL for an <img>. */
export async function objectUrl(path) {
  const s = session.get();
  const response = await fetch(path, { headers: s ? { Authorization: `Bearer ${s.token}` } : {} });
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    throw new ApiError(response.status, data?.error, data?.detail);
  }
  return URL.createObjectURL(await response.blob());
}
