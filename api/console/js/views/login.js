// Sign in with a person id and password (the API's OAuth2 password flow). Before sign-in the
// browser's language (or the one last used on this browser) is shown; the switch changes it.

import { signIn } from "../api.js";
import { h } from "../dom.js";
import { LOCALES, locale, t } from "../i18n.js";

export function render(root, { onSignedIn, onLanguage }) {
  const error = h("p", { class: "error", role: "alert" });
  const user = h("input", { name: "username", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const button = h("button", { class: "primary", type: "submit" }, t("login.submit"));
  const languages = h("div", { class: "row languages", role: "group", "aria-label": t("shell.language") },
    LOCALES.map((l) => h("button", { type: "button", class: "small quiet", lang: l, dataset: { locale: l },
      "aria-pressed": String(l === locale()), onclick: () => onLanguage(l) }, t(`shell.language.${l}`))));
  const form = h("form", { class: "panel login", onsubmit: async (e) => {
    e.preventDefault();
    button.disabled = true;
    error.textContent = "";
    try {
      await signIn(user.value.trim(), password.value);
      await onSignedIn();
    } catch (err) {
      error.textContent = err.status === 401 ? t("login.wrong") : err.message;
    } finally {
      button.disabled = false;
    }
  } },
  h("h1", {}, t("shell.brand")),
  h("p", { class: "muted" }, t("login.intro")),
  h("label", { for: "username" }, t("login.person")), user,
  h("label", { for: "password" }, t("login.password")), password,
  button, error, languages);
  user.id = "username";
  password.id = "password";
  root.append(form);
  user.focus();
}
