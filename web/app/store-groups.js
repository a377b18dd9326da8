// Groups: member lists, the group events that change them, and an admin's actions.

/** Store methods (mixed into Store): groups read, created and changed. */
export const groupMethods = {
  /** How many members besides me a group has (undefined before its list is loaded). */
  otherMembers(group) {
    const info = this.groups.get(group);
    return info ? info.members.filter((m) => m.user !== this.me).length : undefined;
  },

  /** Reads a group's name and members; a group I am not in any more is marked `left`. */
  async loadGroup(group) {
    try {
      const info = await this.client.groups.info(group);
      this.groups.set(group, info);
      const conv = this.conversation(`g:${group}`);
      conv.name = info.name;
      conv.left = !info.members.some((m) => m.user === this.me);
      this.loadProfiles(info.members.map((m) => m.user), 30_000);
      this.watch(info.members.map((m) => m.user).filter((u) => u !== this.me).slice(0, 100));
    } catch (e) {
      if (e.code === "forbidden" || e.code === "not_found") this.conversation(`g:${group}`).left = true;
    }
    this.changed();
  },

  /** Creates a group with the given members and opens it. */
  async createGroup(name, members) {
    for (const u of members) await this.findUser(u);
    const group = await this.client.groups.create(name, members);
    const conv = this.conversation(`g:${group}`);
    conv.name = name;
    this.openChat(`g:${group}`);
  },

  /** A group change (`add`, `remove`, `promote`, `demote`, `leave`, `rename`), then the new
   * member list. */
  async groupAction(group, action, arg) {
    if (action === "leave") await this.client.groups.leave(group);
    else if (action === "rename") await this.client.groups.rename(group, arg);
    else await this.client.groups[action](group, arg);
    await this.loadGroup(group);
  },

  /** A group event: the name, whether I am still a member, and the member list refreshed. */
  groupEvent(m) {
    const conv = this.conversation(`g:${m.group}`);
    if (m.name) conv.name = m.name;
    const gone = (m.event === "member_removed" || m.event === "member_left") && (m.users || [m.by]).includes(this.me);
    if (gone) conv.left = true;
    if (m.event === "member_added" && (m.users || []).includes(this.me)) conv.left = false;
    if (this.groups.has(m.group) || `g:${m.group}` === this.open) this.loadGroup(m.group);
  },
};
