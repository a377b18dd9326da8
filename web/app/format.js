// How times, sizes and durations read on screen.

const pad = (n) => String(n).padStart(2, "0");

/** `14:05` today, `Mon 14:05` this week, `3 Jan` before. */
export function shortTime(ts, now = Date.now()) {
  if (!ts) return "";
  const d = new Date(ts);
  const n = new Date(now);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (d.toDateString() === n.toDateString()) return hm;
  if (now - ts < 6 * 86400_000) return `${d.toLocaleDateString(undefined, { weekday: "short" })} ${hm}`;
  return d.toLocaleDateString(undefined, { day: "numeric", month: "short" });
}

/** "last seen today at 14:05" and the like, from a presence. */
export function lastSeen(p) {
  if (!p) return "";
  if (p.status === "online") return "online";
  if (!p.last_seen) return "offline";
  return `last seen ${shortTime(p.last_seen)}`;
}

/** `1.2 MB`. */
export function fileSize(bytes) {
  if (bytes == null) return "";
  const units = ["B", "KB", "MB", "GB"];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

/** `1:07` from milliseconds. */
export function duration(ms) {
  if (!ms && ms !== 0) return "";
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${pad(s % 60)}`;
}

/** A one-line summary of a message for the conversation list and notifications. */
export function summary(m) {
  if (!m) return "";
  if (m.type === "event") return eventText(m);
  const label = { image: "Photo", video: "Video", audio: "Voice message", file: "File" }[m.type];
  if (label) return m.text ? `${label}: ${m.text}` : label;
  return m.text || "";
}

/** "alice added bob" for a group event; `name` maps a user id to how it is shown. */
export function eventText(m, name = (u) => u) {
  const who = name(m.by);
  const users = (m.users || []).map(name).join(", ");
  switch (m.event) {
    case "member_added":
      if (m.name) return users ? `${who} created “${m.name}” with ${users}` : `${who} created “${m.name}”`;
      return `${who} added ${users}`;
    case "member_removed":
      return `${who} removed ${users}`;
    case "member_left":
      return `${users || who} left`;
    case "promoted":
      return `${users} is now an admin`;
    case "demoted":
      return `${users} is no longer an admin`;
    case "renamed":
      return `${who} renamed the group to “${m.name}”`;
    default:
      return m.event || "group changed";
  }
}
