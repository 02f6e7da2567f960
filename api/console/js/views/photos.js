// A stand-in for photo evidence until the photos branch (H5) is merged, with its interface:
// photoPicker(taskId) → {element, ids(): Promise<number[]>} and photoGallery(taskId, photoIds).
// This one uploads nothing (ids() is empty) and lists the ids it is given.

import { h } from "../dom.js";
import { t } from "../i18n.js";

export function photoPicker(taskId) {
  const input = h("input", { type: "file", accept: "image/*", capture: "environment", multiple: true,
    id: `photo-input-${taskId}` });
  const element = h("div", { class: "photo-picker" },
    h("label", { for: input.id }, t("task.photos_add")), input);
  return { element, ids: async () => [] };
}

export function photoGallery(taskId, photoIds = []) {
  return h("ul", { class: "photo-gallery", dataset: { task: taskId } },
    (photoIds || []).map((id) => h("li", { dataset: { photo: id } }, `#${id}`)));
}
