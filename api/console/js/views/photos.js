// Photo evidence of a task: a picker that takes pictures with the phone's camera and uploads
// them at once (POST /api/tasks/{id}/photos), and a gallery of a task's photos (thumbnails that
// open full size). The feedback dialog and the task timeline use both.

import { api, objectUrl, session } from "../api.js";
import { h } from "../dom.js";
import { locale, number, t } from "../i18n.js";

export const MAX_PHOTO_BYTES = 5 * 1024 * 1024; // api/routes/photos.py MAX_PHOTO_BYTES
const SENDABLE = new Set(["image/jpeg", "image/png"]);
const LONGEST_SIDE = 2560; // a picture re-encoded here is made at most this large

/**
 * A picture the server would refuse as it is (another format such as HEIC, or past the cap)
 * re-encoded here as a JPEG of a sendable size; the browser drops its metadata (and location).
 */
async function sendable(file) {
  if (SENDABLE.has(file.type) && file.size <= MAX_PHOTO_BYTES) return { blob: file, reencoded: false };
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error(t("photo.not_image", { name: file.name }));
  }
  const scale = Math.min(1, LONGEST_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  for (const quality of [0.85, 0.7, 0.5]) {
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
    if (blob && blob.size <= MAX_PHOTO_BYTES) return { blob, reencoded: true };
  }
  throw new Error(t("photo.too_large", { name: file.name, mb: number(MAX_PHOTO_BYTES / 1024 / 1024) }));
}

/** Upload one picture with progress; resolves to the stored photo's record. */
function upload(taskId, blob, keepLocation, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const query = keepLocation ? "?keep_location=true" : "";
    xhr.open("POST", `/api/tasks/${taskId}/photos${query}`);
    const s = session.get();
    if (s) xhr.setRequestHeader("Authorization", `Bearer ${s.token}`);
    xhr.setRequestHeader("Content-Type", blob.type);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("Accept-Language", locale());
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status === 201 && body) resolve(body);
      else reject(new Error(body?.message || body?.detail || t("photo.upload_failed", { status: xhr.status })));
    };
    xhr.onerror = () => reject(new Error(t("photo.unreachable")));
    xhr.send(blob);
  });
}

/**
 * A picker for a task's photo evidence: an <input type=file capture=environment multiple>
 * that uploads each chosen picture at once, showing its progress, its thumbnail or what went
 * wrong. `ids()` resolves, once the uploads under way have finished, to the ids of the photos
 * stored (to send with the feedback as `photos`). The GPS position is stripped by the server
 * unless the person ticks "keep location".
 */
export function photoPicker(taskId) {
  const uploads = []; // {promise, id, removed}
  const list = h("ul", { class: "photo-list", "aria-live": "polite" });
  const inputId = `photo-input-${taskId}-${Math.random().toString(36).slice(2, 8)}`;
  const input = h("input", { type: "file", id: inputId, accept: "image/*", capture: "environment", multiple: true,
    class: "photo-input" });
  const keep = h("input", { type: "checkbox", id: `${inputId}-keep` });
  const element = h("div", { class: "photo-picker" },
    input, // visually hidden but focusable; its label is the big target
    h("label", { for: inputId, class: "photo-take" }, t("photo.take")),
    h("label", { class: "inline small", for: `${inputId}-keep` }, keep, t("photo.keep_location")),
    list);

  input.addEventListener("change", () => {
    for (const file of input.files) add(file);
    input.value = ""; // choosing the same picture again adds it again
  });

  function add(file) {
    const bar = h("progress", { max: 1, value: 0, "aria-label": t("photo.progress", { name: file.name }) });
    const status = h("span", { class: "small muted" }, t("photo.uploading"));
    const item = h("li", { class: "photo-item", dataset: { state: "uploading" } }, bar, status);
    list.append(item);
    const entry = { id: null, removed: false };
    entry.promise = (async () => {
      try {
        const { blob, reencoded } = await sendable(file);
        const photo = await upload(taskId, blob, keep.checked && !reencoded, (share) => { bar.value = share; });
        entry.id = photo.id;
        item.dataset.state = "done";
        item.dataset.photo = photo.id;
        const thumb = await objectUrl(`/api/tasks/${taskId}/photos/${photo.id}?size=thumb`).catch(() => null);
        // Removed on the server too (DELETE: only its uploader, only while no feedback
        // carries it), so a photo taken by mistake is not kept and shown to the checker.
        const remove = h("button", { type: "button", class: "small quiet", onclick: async () => {
          remove.disabled = true;
          try {
            await api(`/api/tasks/${taskId}/photos/${photo.id}`, { method: "DELETE" });
            entry.removed = true;
            item.remove();
          } catch (e) {
            remove.disabled = false;
            item.append(h("span", { role: "alert", class: "small error" }, t("photo.remove_failed", { reason: e.message })));
          }
        } }, t("photo.remove"));
        item.replaceChildren(
          thumb ? h("img", { src: thumb, alt: t("photo.thumb_alt", { id: photo.id }), class: "photo-thumb" }) : null,
          h("span", { class: "small" }, reencoded ? t("photo.uploaded_reencoded") : t("photo.uploaded")), remove);
      } catch (e) {
        item.dataset.state = "failed";
        item.classList.add("error");
        item.replaceChildren(h("span", { role: "alert" }, t("photo.failed", { name: file.name, reason: e.message })));
      }
    })();
    uploads.push(entry);
  }

  return {
    element,
    async ids() {
      await Promise.all(uploads.map((u) => u.promise));
      return uploads.filter((u) => u.id !== null && !u.removed).map((u) => u.id);
    },
  };
}

/** A task's photos as thumbnails that open full size (all of its photos when no ids are given). */
export function photoGallery(taskId, photoIds = null) {
  const box = h("ul", { class: "photo-gallery", dataset: { task: taskId } });
  (async () => {
    let ids = photoIds;
    if (!ids) {
      ids = (await api(`/api/tasks/${taskId}/photos`)).map((p) => p.id);
    }
    for (const id of ids) {
      const open = h("button", { type: "button", class: "photo-open", "aria-label": t("photo.open", { id }),
        onclick: () => show(taskId, id) }, t("photo.loading"));
      box.append(h("li", { dataset: { photo: id } }, open));
      objectUrl(`/api/tasks/${taskId}/photos/${id}?size=thumb`).then(
        (url) => open.replaceChildren(h("img", { src: url, alt: "", class: "photo-thumb" })),
        (e) => open.replaceChildren(h("span", { class: "small error" }, e.message)));
    }
  })().catch((e) => box.append(h("li", { class: "small error" }, e.message)));
  return box;
}

/** A photo full size in a dialog, closed with its button or Escape. */
async function show(taskId, id) {
  const close = h("button", { type: "button", class: "small", onclick: () => dialog.close() }, t("photo.close"));
  const body = h("div", { class: "photo-full" }, t("photo.loading"));
  const dialog = h("dialog", { class: "photo-dialog", "aria-label": t("photo.full_title", { id }) },
    h("div", { class: "row" }, h("h1", {}, t("photo.full_title", { id })), h("span", { class: "spacer" }), close), body);
  let url = null;
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (url) URL.revokeObjectURL(url);
  });
  document.body.append(dialog);
  dialog.showModal();
  close.focus();
  try {
    url = await objectUrl(`/api/tasks/${taskId}/photos/${id}`);
    body.replaceChildren(h("img", { src: url, alt: t("photo.full_alt", { id }) }));
  } catch (e) {
    body.replaceChildren(h("p", { class: "error" }, e.message));
  }
}
