// A new message while the tab is in the background: a system notification when the user
// allowed them, and the unread count in the tab's title either way.

const BASE_TITLE = "chatd";

/** Asks for permission once, from a user gesture (browsers ignore it otherwise). */
export function askPermission() {
  if (window.Notification && Notification.permission === "default") {
    // Older browsers return no promise (they take a callback) or throw.
    try {
      Promise.resolve(Notification.requestPermission()).catch(() => {});
    } catch {
      // Notifications stay off; the title still counts unread messages.
    }
  }
}

/** Whether the user cannot see the page now. */
export function inBackground() {
  return document.visibilityState === "hidden";
}

/** Shows a notification for a message when the tab is hidden; `onOpen` runs on its click. */
export function notifyMessage({ title, body, tag, onOpen }) {
  if (!inBackground() || !window.Notification || Notification.permission !== "granted") return;
  try {
    const n = new Notification(title, { body, tag, renotify: true });
    n.onclick = () => {
      window.focus();
      onOpen?.();
      n.close();
    };
  } catch {
    // Some mobile browsers only allow notifications from a service worker; the title still shows.
  }
}

/** "(3) chatd" while there are unread messages. */
export function showUnreadInTitle(count) {
  const title = count > 0 ? `(${count}) ${BASE_TITLE}` : BASE_TITLE;
  if (document.title !== title) document.title = title;
}
