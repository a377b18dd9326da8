// Small forms over the app: a new chat by exact user id, and a new group.
import { useState } from "preact/hooks";
import { html } from "./html.js";
import { Icon } from "./icons.js";
import { useSubmit } from "./use-submit.js";

/** A modal box; a click outside or Escape closes it. */
export function Dialog({ title, onClose, children, testid }) {
  return html`
    <div class="overlay" onClick=${(e) => e.target === e.currentTarget && onClose()}
      onKeyDown=${(e) => e.key === "Escape" && onClose()}>
      <div class="dialog" role="dialog" aria-label=${title} data-testid=${testid}>
        <header class="dialog-head">
          <h2>${title}</h2>
          <button class="icon-button" title="Close" data-testid="dialog-close" onClick=${onClose}><${Icon} name="close" /></button>
        </header>
        ${children}
      </div>
    </div>
  `;
}

/** Starts a chat with someone whose exact user id you know. */
export function NewChat({ store }) {
  const [user, setUser] = useState("");
  const { error, busy, submit } = useSubmit(() => store.startChat(user.trim()));
  return html`
    <${Dialog} title="New chat" testid="new-chat" onClose=${() => store.showPanel(null)}>
      <form class="stack" onSubmit=${submit}>
        <input data-testid="new-chat-user" placeholder="Exact user id" value=${user} required autofocus
          onInput=${(e) => setUser(e.currentTarget.value)} />
        ${error && html`<div class="error" data-testid="new-chat-error">${error}</div>`}
        <button data-testid="new-chat-submit" disabled=${busy}>Start chat</button>
      </form>
    <//>
  `;
}

/** Creates a group: a name and the members' user ids. */
export function NewGroup({ store }) {
  const [name, setName] = useState("");
  const [members, setMembers] = useState("");
  const { error, busy, submit } = useSubmit(() =>
    store.createGroup(name.trim(), members.split(/[\s,]+/).filter(Boolean)),
  );
  return html`
    <${Dialog} title="New group" testid="new-group" onClose=${() => store.showPanel(null)}>
      <form class="stack" onSubmit=${submit}>
        <input data-testid="new-group-name" placeholder="Group name" value=${name} required maxlength="100"
          autofocus onInput=${(e) => setName(e.currentTarget.value)} />
        <input data-testid="new-group-members" placeholder="Members' user ids, separated by commas"
          value=${members} onInput=${(e) => setMembers(e.currentTarget.value)} />
        ${error && html`<div class="error" data-testid="new-group-error">${error}</div>`}
        <button data-testid="new-group-submit" disabled=${busy}>Create group</button>
      </form>
    <//>
  `;
}
