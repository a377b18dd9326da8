// The app's frame: the login screen, or the conversation list beside the open chat (one at a
// time on a phone), with the dialogs and the group panel over them.
import { useState, useEffect } from "preact/hooks";
import { html } from "./html.js";
import { Icon } from "./icons.js";
import { Login } from "./login.js";
import { ConversationList } from "./conversation-list.js";
import { ChatView } from "./chat-view.js";
import { GroupPanel } from "./group-panel.js";
import { NewChat, NewGroup } from "./dialogs.js";
import { Profile } from "./profile.js";
import { Avatar } from "./avatar.js";
import { askPermission } from "./notify.js";

const CONNECTION = {
  connecting: "Connecting…",
  offline: "Offline — reconnecting…",
  refused: "Your session expired; please log in again.",
  taken_over: "This session was opened elsewhere.",
  closed: "Disconnected.",
};

/** Re-renders on every change of the store. */
function useStore(store) {
  const [, setVersion] = useState(store.version);
  useEffect(() => {
    const stop = store.subscribe(setVersion);
    // A change made before this effect ran (resume() on page load) was not seen yet.
    setVersion(store.version);
    return stop;
  }, [store]);
}

/** The whole app. */
export function App({ store }) {
  useStore(store);
  if (store.phase === "connecting" && store.resuming) {
    return html`<div class="splash" data-testid="connecting">
      <h1>chatd</h1>
      <div class="muted">Connecting as ${store.resuming}…</div>
      <button class="ghost" onClick=${() => store.logout()}>Log in as someone else</button>
    </div>`;
  }
  if (store.phase !== "ready") {
    return html`<${Login} busy=${store.phase === "connecting"} notice=${store.loginError}
      onLogin=${(user, password) => {
        askPermission();
        return store.login(user, password);
      }} />`;
  }
  const group = store.open?.startsWith("g:") ? store.open.slice(2) : null;
  return html`
    <div class=${`app ${store.open ? "has-chat" : ""} ${store.panel === "group" && group ? "has-panel" : ""}`}
      data-testid="app" data-user=${store.me}>
      <nav class="sidebar">
        <header class="bar">
          <button class="ghost me" data-testid="profile-button" title="Profile" onClick=${() => store.showPanel("profile")}>
            <${Avatar} store=${store} user=${store.me} size=${32} />
            <span class="name" data-testid="me">${store.displayName(store.me)}</span>
          </button>
          <span class="grow"></span>
          <button class="icon-button" data-testid="new-chat-button" title="New chat" onClick=${() => store.showPanel("new-chat")}><${Icon} name="pencil" /></button>
          <button class="icon-button" data-testid="new-group-button" title="New group" onClick=${() => store.showPanel("new-group")}><${Icon} name="people" /></button>
        </header>
        ${store.conn !== "online" && html`
          <div class="connection" data-testid="connection-state" data-state=${store.conn}
            title=${store.connError?.message || ""}>
            ${CONNECTION[store.conn] || store.conn}
            ${(store.conn === "refused" || store.conn === "taken_over") && html`
              <button class="small" onClick=${() => store.logout()}>Log in again</button>`}
          </div>`}
        <${ConversationList} store=${store} />
      </nav>
      <main class="chat-pane">
        ${store.open
          ? html`<${ChatView} key=${store.open} store=${store} chatKey=${store.open} />`
          : html`<div class="placeholder muted">Choose a conversation</div>`}
      </main>
      ${store.panel === "group" && group && html`<${GroupPanel} key=${group} store=${store} group=${group} />`}
      ${store.panel === "new-chat" && html`<${NewChat} store=${store} />`}
      ${store.panel === "new-group" && html`<${NewGroup} store=${store} />`}
      ${store.panel === "profile" && html`<${Profile} store=${store} />`}
    </div>
  `;
}
