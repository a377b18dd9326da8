// A group's details: its name (admins rename it), the members with their roles, and what an
// admin may do to them (add, remove, make or unmake admin); anyone may leave.
import { useState } from "preact/hooks";
import { html } from "./html.js";
import { Icon } from "./icons.js";
import { Avatar } from "./avatar.js";
import { describe } from "./errors.js";

/** The panel of group `group`. */
export function GroupPanel({ store, group }) {
  const info = store.groups.get(group);
  const [error, setError] = useState("");
  const [adding, setAdding] = useState("");
  const [renaming, setRenaming] = useState(null);
  const me = info?.members.find((m) => m.user === store.me);
  const admin = me?.role === "admin";

  async function act(action, arg) {
    setError("");
    try {
      await store.groupAction(group, action, arg);
      return true;
    } catch (e) {
      setError(e.code === "not_found" ? `Not found: ${e.message}` : describe(e));
      return false;
    }
  }

  async function add(e) {
    e.preventDefault();
    const users = adding.split(/[\s,]+/).filter(Boolean);
    if (users.length && (await act("add", users))) setAdding("");
  }

  async function rename(e) {
    e.preventDefault();
    if (renaming?.trim() && (await act("rename", renaming.trim()))) setRenaming(null);
  }

  return html`
    <aside class="panel" data-testid="group-panel">
      <header class="bar">
        <h2 class="grow">Group info</h2>
        <button class="icon-button" title="Close" data-testid="group-panel-close"
          onClick=${() => store.showPanel(null)}><${Icon} name="close" /></button>
      </header>
      <div class="panel-body">
        ${!info && html`<div class="muted">Loading…</div>`}
        ${info && html`
          ${renaming === null
            ? html`<div class="group-name">
                <strong data-testid="group-name">${info.name}</strong>
                ${admin && html`<button class="ghost small" data-testid="group-rename"
                  onClick=${() => setRenaming(info.name)}>Rename</button>`}
              </div>`
            : html`<form class="inline-form" onSubmit=${rename}>
                <input data-testid="group-rename-input" value=${renaming} maxlength="100"
                  onInput=${(e) => setRenaming(e.currentTarget.value)} />
                <button data-testid="group-rename-submit">Save</button>
              </form>`}
          <h3>${info.members.length} members</h3>
          <ul class="members" data-testid="group-members">
            ${info.members.map((m) => html`
              <li key=${m.user} data-testid="member" data-user=${m.user} data-role=${m.role}>
                <${Avatar} store=${store} user=${m.user} size=${32}
                  online=${store.presence.get(m.user)?.status === "online"} />
                <span class="grow">
                  ${m.user === store.me ? "You" : store.displayName(m.user)}
                  ${store.displayName(m.user) !== m.user && html` <span class="muted">@${m.user}</span>`}
                </span>
                ${m.role === "admin" && html`<span class="role" data-testid="member-role">admin</span>`}
                ${admin && m.user !== store.me && html`
                  <span class="member-actions">
                    ${m.role === "admin"
                      ? html`<button class="ghost small" data-testid="member-demote" onClick=${() => act("demote", [m.user])}>Unmake admin</button>`
                      : html`<button class="ghost small" data-testid="member-promote" onClick=${() => act("promote", [m.user])}>Make admin</button>`}
                    <button class="ghost small danger" data-testid="member-remove" onClick=${() => act("remove", [m.user])}>Remove</button>
                  </span>`}
              </li>`)}
          </ul>
          ${admin && html`
            <form class="inline-form" onSubmit=${add}>
              <input data-testid="group-add-input" placeholder="Add by user id" value=${adding}
                onInput=${(e) => setAdding(e.currentTarget.value)} />
              <button data-testid="group-add-submit">Add</button>
            </form>`}
          ${error && html`<div class="error" data-testid="group-error">${error}</div>`}
          ${me && html`<button class="danger wide" data-testid="group-leave" onClick=${() => act("leave")}>Leave group</button>`}
        `}
      </div>
    </aside>
  `;
}
