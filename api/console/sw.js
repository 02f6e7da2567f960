// The console's service worker: only for notifications (no caching: the console is always the
// server's current one). Tapping a notification brings an open console forward at its page, or
// opens one.

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const href = event.notification.data?.href || "#/inbox";
  const target = new URL(href, self.registration.scope).href;
  event.waitUntil((async () => {
    const open = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const client of open) {
      if (client.url.startsWith(self.registration.scope)) {
        await client.focus();
        return client.postMessage({ open: href }); // the page goes there without reloading
      }
    }
    return self.clients.openWindow(target);
  })());
});
