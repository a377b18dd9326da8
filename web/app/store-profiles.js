// Profiles: display names and pictures, fetched again when they matter (the server does not
// push them), and my own profile.
import { metaOf } from "./media.js";

/** Store methods (mixed into Store): profiles read and set. */
export const profileMethods = {
  /** Fetches the profiles of `users` last fetched more than `maxAgeMs` ago. The server does not
   * push profile changes, and shows a profile only once a conversation is shared, so they are
   * asked again when they matter (a chat opened, a first message). A failure (a server without
   * profiles) leaves plain user ids. */
  loadProfiles(users, maxAgeMs = 5 * 60_000) {
    const now = Date.now();
    const due = [...new Set(users)].filter((u) => u && !(now - (this.profiles.get(u)?.fetched ?? -Infinity) <= maxAgeMs));
    if (!due.length || !this.client) return;
    for (const u of due) this.profiles.set(u, { user: u, name: null, avatar: null, ...this.profiles.get(u), fetched: now });
    for (let i = 0; i < due.length; i += 100) {
      this.client.profile
        .get(due.slice(i, i + 100))
        .then((list) => {
          for (const p of list) this.profiles.set(p.user, { ...p, fetched: now });
          this.changed();
        })
        .catch(() => {});
    }
  },

  /** The name a user is shown with. */
  displayName(user) {
    if (!user) return "";
    return this.profiles.get(user)?.name || user;
  },

  /** The title of a chat. */
  chatTitle(key) {
    const conv = this.conversations.get(key);
    if (key.startsWith("g:")) return conv?.name || this.groups.get(key.slice(2))?.name || "Group";
    return this.displayName(key.slice(2));
  },

  /** Sets my name and, with `avatarFile`, a new picture. */
  async saveProfile({ name, avatarFile }) {
    const p = { name: name || null };
    if (avatarFile) {
      const meta = await metaOf(avatarFile, "image");
      p.avatar = (await this.client.media.upload(avatarFile, meta)).media;
    }
    await this.client.profile.set(p);
    const mine = this.profiles.get(this.me) || { user: this.me };
    this.profiles.set(this.me, { ...mine, ...p });
    this.changed();
  },
};
