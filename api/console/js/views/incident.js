// One incident, the page a notification about it opens: what happened, where and on which
// device, its task and who has it, the camera's picture and clip, its timeline (who did what, when) and
// who was notified. Supervisors can acknowledge, silence and resolve it here too.

import { SUPERVISORS, api, objectUrl, silenced } from "../api.js";
import { act, ask, chip, fill, h } from "../dom.js";
import { ago, clock, has, label, stamp, t, title } from "../i18n.js";
import { deliveriesTable } from "./deliveries.js";
import { photoGallery } from "./photos.js";

/** A time in the venue's zone, its full date and time on hover. */
function when(ts, tz) {
  return ts ? h("time", { datetime: ts, title: stamp(ts, tz) }, clock(ts, tz)) : t("incident.none");
}

/** What happened, in words: "派单给 张伟", "重复 3 次" (the code itself if the catalogue has none). */
function eventName(e) {
  const key = `incident.event.${e.kind}`;
  if (!has(key)) return e.kind.replaceAll("_", " ");
  return t(key, { assignee: e.data?.assignee_name || e.data?.assignee || "", count: e.data?.occurrences ?? 0,
    minutes: e.data?.minutes ?? 0 });
}

function fact(name, ...value) {
  return [h("dt", {}, name), h("dd", {}, ...value)];
}

export async function render(root, ctx, id) {
  const head = h("div", { id: "incident" });
  const facts = h("dl", { class: "facts", id: "incident-facts" });
  const picture = h("div", { class: "snapshot", id: "incident-snapshot" });
  const clip = h("div", { class: "snapshot clip", id: "incident-clip" });
  const timeline = h("ol", { class: "timeline incident-timeline", id: "incident-timeline" });
  const deliveries = deliveriesTable("incidents", id);
  root.append(head,
    h("div", { class: "grid-2 incident-grid" },
      h("section", { class: "panel", "aria-labelledby": "incident-facts-h" },
        h("h2", { id: "incident-facts-h" }, t("incident.facts")), facts,
        h("div", { class: "row media" }, picture, clip)),
      h("section", { class: "panel", "aria-labelledby": "incident-timeline-h" },
        h("h2", { id: "incident-timeline-h" }, t("incident.timeline")), timeline)),
    h("section", { class: "panel" }, h("h2", {}, t("incident.notified")), deliveries));

  let pictureUrl = null;
  let clipUrl = null;
  let left = false; // the view was left: a fetch that resolves later revokes its own URL
  let clipCheck = null; // the timer of the next look for a clip that has not arrived yet
  let clipChecks = 0;
  let loaded = false;
  const galleries = new Map(); // kept across reloads: the thumbnails are fetched once

  function gallery(taskId, ids) {
    const key = `${taskId}:${ids.join(",")}`;
    if (!galleries.has(key)) galleries.set(key, photoGallery(taskId, ids));
    return galleries.get(key);
  }

  async function load() {
    let i;
    let c;
    try {
      [i, c] = await Promise.all([api(`/api/incidents/${id}`), api(`/api/incidents/${id}/context`)]);
    } catch (e) {
      fill(head, h("h1", {}, t("incident.heading", { id })),
        h("p", { class: "error" }, e.status === 404 ? t("incident.missing", { id }) : e.message));
      return;
    }
    const tz = c.venue?.timezone;
    document.title = t("incident.page_title", { title: title(i) });
    fill(head,
      h("h1", {}, chip(label("severity", i.severity), i.severity), " ", title(i)),
      h("p", { class: "muted" },
        t("incident.summary", { id: i.id, rule: label("rule", i.rule), status: label("status", i.status) }),
        silenced(i) ? [" ", chip(t("incident.silenced_until", { time: clock(i.silenced_until, tz) }), "grey")] : null),
      actions(i));
    fill(facts,
      fact(t("incident.venue"), c.venue
        ? [h("a", { href: `#/venue/${c.venue.id}`, id: "incident-venue" }, c.venue.name),
          c.venue.address ? h("div", { class: "muted small" }, c.venue.address) : null,
          c.venue.latitude !== null && c.venue.latitude !== undefined
            ? h("div", {}, h("a", { href: `geo:${c.venue.latitude},${c.venue.longitude}`, class: "small" }, t("incident.navigate")))
            : null]
        : t("incident.platform")),
      fact(t("incident.device"), c.device
        ? [h("span", { id: "incident-device" }, c.device.name || c.device.id), " ",
          h("span", { class: "muted small" }, label("device", c.device.kind)), " ",
          chip(c.device.online === true ? t("incident.online") : c.device.online === false ? t("incident.offline") : t("incident.never_seen"),
            c.device.online === true ? "green" : c.device.online === false ? "red" : "grey"),
          c.device.condition && c.device.condition !== "ok"
            ? h("div", { class: "small", id: "incident-device-health" },
              t("venue.health", { condition: label("venue.condition", c.device.condition) }),
              c.device.condition_detail ? h("div", { class: "muted" }, c.device.condition_detail) : null)
            : null]
        : t("incident.none")),
      fact(t("incident.task"), c.task
        ? [h("a", { href: `#/task/${c.task.id}`, id: "incident-task" }, t("incident.task_link", { id: c.task.id })), " ",
          chip(label("taskstate", c.task.state), "grey"),
          h("div", { class: "small" }, c.task.assignee
            ? t("incident.assignee", { name: c.task.assignee_name || c.task.assignee })
            : t("incident.unassigned"))]
        : t("incident.no_task")),
      fact(t("incident.opened"), when(i.opened_at, tz), " ", h("span", { class: "muted small" }, ago(i.opened_at))),
      fact(t("incident.last_seen"), when(i.last_seen, tz), " ",
        h("span", { class: "muted small" }, t("incident.occurrences", { count: i.occurrences }))),
      i.resolved_at ? fact(t("incident.resolved"), when(i.resolved_at, tz)) : null);
    showPicture(c);
    showClip(c);
    awaitClip(i, c);
    fill(timeline, c.timeline.map((e) => h("li", { dataset: { kind: e.kind } },
      h("div", {}, when(e.at, tz), " ", h("b", {}, eventName(e)), " ",
        h("span", { class: "muted" }, e.actor_name || (e.actor === "system" ? t("incident.system") : e.actor))),
      // A person's note; the system's reasons ("on duty") say no more than the event's name.
      e.note && e.actor !== "system" ? h("div", { class: "note-text" }, e.note) : null,
      // The feedback's photo evidence, for whoever may see it: the checkers and the assignee.
      e.data?.photos?.length && (SUPERVISORS.has(ctx.me.role) || c.task?.assignee === ctx.me.id)
        ? gallery(e.data.task_id, e.data.photos) : null)));
    if (!c.timeline.length) timeline.append(h("li", { class: "muted" }, t("incident.timeline_empty")));
    if (loaded) deliveries.load();
    loaded = true;
  }

  /** The camera's picture, when the incident has one. */
  function showPicture(c) {
    if (!c.snapshot) {
      fill(picture);
      return;
    }
    if (pictureUrl) return;
    fill(picture, h("p", { class: "muted small" }, t("incident.picture_loading")));
    objectUrl(`/api/incidents/${id}/snapshot`).then((url) => {
      if (left) { URL.revokeObjectURL(url); return; }
      pictureUrl = url;
      fill(picture, h("figure", {}, h("img", { src: url, alt: t("incident.picture_alt", { id }) }),
        h("figcaption", { class: "muted small" }, t("incident.picture"))));
    }, (e) => fill(picture, h("p", { class: "muted small" }, e.message)));
  }

  /** A camera alert's clip comes some seconds after the alert (it holds what followed): while
   * a recent camera incident has none, look again a few times. Storing a clip raises no live
   * event, so without this a page opened from the alarm would never show it. */
  const CLIP_CHECKS_S = [8, 20, 60];
  function awaitClip(i, c) {
    clearTimeout(clipCheck);
    clipCheck = null;
    const recent = Date.now() - Date.parse(i.last_seen || i.opened_at) < 3 * 60 * 1000;
    if (c.clip || !i.detail?.alert_id || !recent || clipChecks >= CLIP_CHECKS_S.length || left) return;
    clipCheck = setTimeout(async () => {
      clipChecks += 1;
      try {
        const again = await api(`/api/incidents/${id}/context`);
        if (left) return;
        showClip(again);
        awaitClip(i, again);
      } catch { /* the next reload or check tries again */ }
    }, CLIP_CHECKS_S[clipChecks] * 1000);
  }

  /** The camera's clip beside the picture, when one has arrived (it comes after the alert). */
  function showClip(c) {
    if (!c.clip) {
      fill(clip);
      return;
    }
    if (clipUrl) return;
    clipUrl = "loading";
    objectUrl(`/api/incidents/${id}/clip`).then((url) => {
      if (left) { URL.revokeObjectURL(url); return; }
      clipUrl = url;
      const video = h("video", { src: url, controls: true, muted: true, playsinline: true,
        preload: "metadata", "aria-label": t("incident.clip_label", { id }) });
      video.muted = true; // the attribute alone does not mute an element made by script
      // A browser that cannot play WebM (older iOS Safari) says so, and the file can be saved.
      video.addEventListener("error", () => fill(clip, h("p", { class: "muted small" },
        t("incident.clip_unplayable"), " ",
        h("a", { href: url, download: `incident-${id}.webm` }, t("incident.clip_download")))));
      fill(clip, h("figure", {}, video, h("figcaption", { class: "muted small" }, t("incident.clip"))));
    }, (e) => {
      clipUrl = null;
      fill(clip, h("p", { class: "muted small" }, e.message));
    });
  }

  function actions(i) {
    if (!SUPERVISORS.has(ctx.me.role) || i.status === "resolved") return null;
    const row = h("div", { class: "row", id: "incident-actions" });
    const button = (text, f) => {
      const b = h("button", { type: "button", class: "small", onclick: () => act(b, async () => {
        if ((await f()) !== null) await load();
      }) }, text);
      return b;
    };
    if (i.status === "open") {
      row.append(button(t("incident.acknowledge"), () => api(`/api/incidents/${id}/acknowledge`, { method: "POST", body: {} })));
    }
    row.append(silenced(i)
      ? button(t("incident.unsilence"), () => api(`/api/incidents/${id}/silence`, { method: "POST", body: { minutes: 0 } }))
      : button(t("incident.silence"), () => api(`/api/incidents/${id}/silence`, { method: "POST", body: { minutes: 30 } })));
    row.append(button(t("incident.resolve"), async () => {
      const note = await ask(t("incident.resolve_title", { title: title(i) }),
        { label: t("incident.resolve_note"), confirm: t("incident.resolve") });
      return note === null ? null : api(`/api/incidents/${id}/resolve`, { method: "POST", body: { note } });
    }));
    return row;
  }

  const onIncident = (e) => { if (String(e.detail.id) === String(id)) load(); };
  const onTask = (e) => { if (String(e.detail.incident_id) === String(id)) load(); };
  ctx.live.addEventListener("incident", onIncident);
  ctx.live.addEventListener("task", onTask);
  ctx.live.addEventListener("resync", load);
  await load();
  return () => {
    ctx.live.removeEventListener("incident", onIncident);
    ctx.live.removeEventListener("task", onTask);
    ctx.live.removeEventListener("resync", load);
    left = true;
    clearTimeout(clipCheck);
    if (pictureUrl) URL.revokeObjectURL(pictureUrl);
    if (clipUrl && clipUrl !== "loading") URL.revokeObjectURL(clipUrl);
  };
}
