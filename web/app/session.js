// The saved login: the token (never the password) in localStorage, so a reload stays logged in
// until the token expires. One entry per browser; each tab still gets its own device id.

const KEY = "chatd.session";
/** A token this close to its expiry is not worth connecting with. */
const MARGIN_MS = 60_000;

/** `{user, token, expires}` when a usable token is saved, else null. */
export function loadSession() {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) || "null");
    if (s && typeof s.user === "string" && typeof s.token === "string" && s.expires > Date.now() + MARGIN_MS) {
      return s;
    }
  } catch {
    // A corrupt entry is the same as none.
  }
  clearSession();
  return null;
}

/** Saves the login token of `user`. */
export function saveSession(user, { token, expires }) {
  localStorage.setItem(KEY, JSON.stringify({ user, token, expires }));
}

/** Forgets the saved login. */
export function clearSession() {
  try {
    localStorage.removeItem(KEY);
  } catch {
    // Storage disabled: nothing was saved either.
  }
}

/** The HTTP origin and the MQTT-over-WebSocket URL of the server that served this page. */
export function serverUrls(loc = window.location) {
  const ws = loc.protocol === "https:" ? "wss:" : "ws:";
  return { httpBase: loc.origin, wsUrl: `${ws}//${loc.host}/mqtt` };
}
