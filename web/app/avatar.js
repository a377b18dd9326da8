// A round picture for a user or group: the profile's avatar when there is one, else initials
// on a colour that stays the same for the same id.
import { html } from "./html.js";

const COLOURS = ["#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

function colourOf(id) {
  let h = 0;
  for (const ch of id) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return COLOURS[h % COLOURS.length];
}

function initials(name) {
  const words = name.replace(/[^\p{L}\p{N} ]/gu, " ").trim().split(/\s+/);
  const first = words[0]?.[0] || "?";
  const second = words.length > 1 ? words[1][0] : "";
  return (first + second).toUpperCase();
}

/** `user` or `group` (an id), with `online` for a presence dot. */
export function Avatar({ store, user, group, name, online, size = 40 }) {
  const id = user || group || "?";
  const label = name || (user ? store.displayName(user) : id);
  const avatarId = user && store.profiles.get(user)?.avatar;
  const info = avatarId ? store.media(avatarId) : null;
  const style = `width:${size}px;height:${size}px;font-size:${Math.round(size * 0.4)}px`;
  return html`
    <span class="avatar" style=${style} data-testid="avatar">
      ${info?.url
        ? html`<img src=${info.url} alt="" />`
        : html`<span class="initials" style=${`background:${colourOf(id)}`}>${group ? "#" : initials(label)}</span>`}
      ${online && html`<span class="dot" data-testid="online-dot"></span>`}
    </span>
  `;
}
