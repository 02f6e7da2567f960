// Sign in with a person id and password (the API's OAuth2 password flow).

import { signIn } from "../api.js";
import { h } from "../dom.js";

export function render(root, { onSignedIn }) {
  const error = h("p", { class: "error", role: "alert" });
  const user = h("input", { name: "username", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const button = h("button", { class: "primary", type: "submit" }, "Sign in");
  const form = h("form", { class: "panel login", onsubmit: async (e) => {
    e.preventDefault();
    button.disabled = true;
    error.textContent = "";
    try {
      await signIn(user.value.trim(), password.value);
      await onSignedIn();
    } catch (err) {
      error.textContent = err.status === 401 ? "Wrong person id or password." : err.message;
    } finally {
      button.disabled = false;
    }
  } },
  h("h1", {}, "gridwatch"),
  h("p", { class: "muted" }, "Venue and safety monitoring. Sign in with your person id."),
  h("label", { for: "username" }, "Person id"), user,
  h("label", { for: "password" }, "Password"), password,
  button, error);
  user.id = "username";
  password.id = "password";
  root.append(form);
  user.focus();
}
