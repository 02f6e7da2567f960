// The console's language: message catalogues (i18n/<locale>.json, one file per locale), the
// locale in use, and times, durations, numbers and titles written in it.
//
// A catalogue maps a key to a message: "board.quiet": "一切正常". `{name}` is a parameter.
// A message that depends on a number is an object of plural forms, chosen by Intl.PluralRules
// from params.count: {"one": "{count} task", "other": "{count} tasks"} (Chinese needs only
// "other").

export const LOCALES = ["zh-CN", "en"];
export const DEFAULT_LOCALE = "zh-CN";
const STORE = "gridwatch.locale";

let current = DEFAULT_LOCALE;
let messages = {};
let zone = "Asia/Shanghai"; // the platform's time zone until a venue says otherwise
const missing = new Set();
// Texts the locale's formats made (times, durations, numbers): the browser tests' check of
// uncatalogued text accepts them as it accepts catalogue messages (tests/console_support.py).
const formatted = new Set();

function made(text) {
  if (formatted.size > 5000) formatted.clear();
  formatted.add(text);
  return text;
}

/** For the browser tests: the catalogue in use, its locale and the formatted texts. */
globalThis.gridwatchI18n = { messages: () => messages, locale: () => current, formatted };

/** The locale the browser prefers among ours (zh-CN when it prefers neither). */
export function browserLocale() {
  for (const tag of navigator.languages || [navigator.language || ""]) {
    if (/^zh\b/i.test(tag)) return "zh-CN";
    if (/^en\b/i.test(tag)) return "en";
  }
  return DEFAULT_LOCALE;
}

/** The locale last used on this browser (the signed-in person's stored one wins). */
export function savedLocale() {
  const saved = localStorage.getItem(STORE);
  return LOCALES.includes(saved) ? saved : browserLocale();
}

/** Loads a locale's catalogue and makes it the console's language. */
export async function setLocale(locale) {
  const wanted = LOCALES.includes(locale) ? locale : DEFAULT_LOCALE;
  if (wanted === current && Object.keys(messages).length) return;
  const response = await fetch(new URL(`../i18n/${wanted}.json`, import.meta.url));
  // i18n-exempt: without a catalogue there is no message to take; said in both languages.
  if (!response.ok) throw new Error(`无法加载 ${wanted} 语言包 / the ${wanted} catalogue cannot be loaded (HTTP ${response.status})`); // i18n-exempt
  messages = await response.json();
  current = wanted;
  localStorage.setItem(STORE, wanted);
  document.documentElement.lang = wanted;
}

export function locale() {
  return current;
}

/** The time zone times are shown in when the thing shown has none of its own. */
export function setZone(tz) {
  if (tz) zone = tz;
}

/** A message in the console's language. A key no catalogue has shows as itself, and is logged. */
export function t(key, params = {}) {
  let message = messages[key];
  if (message === undefined) {
    if (!missing.has(key)) console.error(`no message ${key} in the ${current} catalogue`);
    missing.add(key);
    return key;
  }
  if (typeof message === "object") {
    const form = new Intl.PluralRules(current).select(Number(params.count ?? 0));
    message = message[form] ?? message.other;
  }
  return message.replace(/\{(\w+)\}/g, (all, name) =>
    params[name] === undefined || params[name] === null ? all : String(params[name]));
}

/** Whether the catalogue has a key (for codes that may be new to this console). */
export function has(key) {
  return messages[key] !== undefined;
}

/** A code's message (`prefix.code`), or the code itself when the catalogue has none. */
export function label(prefix, code) {
  if (code === null || code === undefined || code === "") return "";
  return has(`${prefix}.${code}`) ? t(`${prefix}.${code}`) : String(code).replaceAll("_", " ");
}

/** An incident's or task's title from its code and parameters, in the reader's language. */
export function title(row) {
  if (row?.title_code && has(`title.${row.title_code}`)) return t(`title.${row.title_code}`, row.title_params || {});
  return row?.title || "";
}

// ---- times, in the venue's time zone (tz) or the platform's ----

/** A time: the time of day when it is today (there), the date and time otherwise. */
export function clock(ts, tz = zone) {
  if (!ts) return "";
  const d = new Date(ts);
  const day = (x) => x.toLocaleDateString("en-CA", { timeZone: tz });
  const today = day(d) === day(new Date());
  return made(new Intl.DateTimeFormat(current, today
    ? { timeZone: tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" }
    : { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" })
    .format(d));
}

/** A date and time in full, for a title attribute or a record. */
export function stamp(ts, tz = zone) {
  if (!ts) return "";
  return made(new Intl.DateTimeFormat(current, { timeZone: tz, dateStyle: "medium", timeStyle: "medium", hourCycle: "h23" })
    .format(new Date(ts)));
}

/** A time in a format of one's own (Intl.DateTimeFormat options), e.g. a chart's axis. */
export function dateText(ts, options, tz = zone) {
  return made(new Intl.DateTimeFormat(current, { timeZone: tz, ...options }).format(new Date(ts)));
}

/** "3 minutes ago", "in 2 hours": relative to now, in the locale's words. */
export function ago(ts) {
  if (!ts) return t("time.never");
  const s = Math.round((new Date(ts).getTime() - Date.now()) / 1000);
  if (Math.abs(s) < 5) return t("time.now");
  const words = new Intl.RelativeTimeFormat(current, { numeric: "auto" });
  const a = Math.abs(s);
  if (a < 60) return made(words.format(s, "second"));
  if (a < 3600) return made(words.format(Math.trunc(s / 60), "minute"));
  if (a < 86400) return made(words.format(Math.trunc(s / 3600), "hour"));
  return made(words.format(Math.trunc(s / 86400), "day"));
}

/** A length of time: "4 min", "1 h 20 min" (the locale's units). */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const unit = (n, u) => made(new Intl.NumberFormat(current, { style: "unit", unit: u, unitDisplay: "short" }).format(n));
  const a = Math.abs(seconds);
  if (a < 10) return unit(Number(a.toFixed(seconds % 1 ? 1 : 0)), "second");
  const s = Math.round(a);
  if (s < 60) return unit(s, "second");
  if (s < 3600) return unit(Math.floor(s / 60), "minute");
  if (s < 86400) return made(`${unit(Math.floor(s / 3600), "hour")} ${unit(Math.floor((s % 3600) / 60), "minute")}`);
  return made(`${unit(Math.floor(s / 86400), "day")} ${unit(Math.floor((s % 86400) / 3600), "hour")}`);
}

/** A number in the locale's format. */
export function number(n, options = {}) {
  return n === null || n === undefined ? "–" : made(new Intl.NumberFormat(current, options).format(n));
}

/** A share (0..1) as a percentage. */
export function percent(rate, digits = 0) {
  return rate === null || rate === undefined
    ? "–"
    : made(new Intl.NumberFormat(current, { style: "percent", maximumFractionDigits: digits }).format(rate));
}
