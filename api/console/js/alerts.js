// Getting a person's attention while the page is open: a sound made with WebAudio (no file to
// fetch), a vibration on phones, and the browser's own notifications once they were allowed.
//
// Browsers let a page play sound, and ask for notifications, only after a gesture of its person:
// the "sound" and "Turn on alerts" buttons are those gestures, and the choices are remembered.

const SOUND_KEY = "gridwatch.sound";
const ALERTS_KEY = "gridwatch.alerts";

let audio = null;
let lastBeep = 0;

export function soundOn() {
  return localStorage.getItem(SOUND_KEY) !== "off";
}

/** Turns the sound on or off (from a click, so that the browser lets it play afterwards). */
export function setSound(on) {
  localStorage.setItem(SOUND_KEY, on ? "on" : "off");
  if (on) unlockAudio();
}

function unlockAudio() {
  if (typeof AudioContext === "undefined") return;
  audio = audio || new AudioContext();
  audio.resume().catch(() => {});
}

/** Three short tones, unless the sound is off. A second call within 3 s adds nothing (a red
 * incident's alarm and its notification arrive together). */
export function beep() {
  if (!soundOn() || typeof AudioContext === "undefined") return;
  const now = Date.now();
  if (now - lastBeep < 3000) return;
  lastBeep = now;
  audio = audio || new AudioContext();
  const t = audio.currentTime;
  for (let i = 0; i < 3; i++) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.0001, t + i * 0.35);
    gain.gain.exponentialRampToValueAtTime(0.3, t + i * 0.35 + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + i * 0.35 + 0.25);
    osc.connect(gain).connect(audio.destination);
    osc.start(t + i * 0.35);
    osc.stop(t + i * 0.35 + 0.3);
  }
}

/** A long-short-long buzz on phones that have it (nothing elsewhere). */
export function vibrate() {
  if (typeof navigator.vibrate === "function") navigator.vibrate([400, 150, 400, 150, 400]);
}

// ---- the browser's notifications ----

/** "on", "off" (chosen here), "denied" (refused in the browser), "unsupported" or "ask". */
export function alertsState() {
  if (typeof Notification === "undefined") return "unsupported";
  if (Notification.permission === "denied") return "denied";
  const chosen = localStorage.getItem(ALERTS_KEY);
  if (chosen === "off") return "off";
  if (Notification.permission === "granted") return chosen === "on" || chosen === null ? "on" : "off";
  return "ask";
}

/** From a click: asks the browser for permission (once), turns alerts on; or turns them off. */
export async function setAlerts(on) {
  unlockAudio();
  if (!on) {
    localStorage.setItem(ALERTS_KEY, "off");
    return alertsState();
  }
  if (typeof Notification === "undefined") return "unsupported";
  const permission = Notification.permission === "default" ? await Notification.requestPermission() : Notification.permission;
  localStorage.setItem(ALERTS_KEY, permission === "granted" ? "on" : "off");
  return alertsState();
}

let worker = null;

/** The service worker shows notifications where a page cannot (Chrome on Android) and brings
 * the console forward when one is tapped. */
export function registerWorker() {
  if (!("serviceWorker" in navigator) || !window.isSecureContext) return;
  navigator.serviceWorker.register("sw.js", { scope: "./" })
    .then((r) => { worker = r; })
    .catch(() => {}); // without it, the page's own notifications still work on desktops
}

/** A notification from the browser, if alerts are on. `href` opens with a tap. */
export async function systemNotice({ tag, title, body, href, red }) {
  if (alertsState() !== "on") return false;
  const options = { body, tag, lang: document.documentElement.lang, icon: "icon.svg", badge: "icon.svg",
    requireInteraction: red, renotify: true, data: { href }, vibrate: red ? [400, 150, 400] : undefined };
  try {
    if (worker?.showNotification) {
      await worker.showNotification(title, options);
      return true;
    }
    const shown = new Notification(title, options);
    shown.onclick = () => {
      window.focus();
      if (href) location.hash = href;
      shown.close();
    };
    return true;
  } catch {
    return false; // a browser that allows notifications only from a service worker
  }
}
