// My profile: the name others see and a picture; and logging out.
import { useState } from "preact/hooks";
import { html } from "./html.js";
import { Dialog } from "./dialogs.js";
import { Avatar } from "./avatar.js";
import { useSubmit } from "./use-submit.js";
import { askPermission } from "./notify.js";

/** The profile screen. */
export function Profile({ store }) {
  const mine = store.profiles.get(store.me);
  const [name, setName] = useState(mine?.name || "");
  const [file, setFile] = useState(null);
  const [saved, setSaved] = useState(false);
  const { error, busy, submit: save } = useSubmit(async () => {
    setSaved(false);
    await store.saveProfile({ name: name.trim(), avatarFile: file });
    setFile(null);
    setSaved(true);
  });
  const status = error || (saved ? "Saved." : "");

  const notifications = window.Notification ? Notification.permission : "unsupported";
  return html`
    <${Dialog} title="Profile" testid="profile" onClose=${() => store.showPanel(null)}>
      <form class="stack" onSubmit=${save}>
        <div class="profile-head">
          <${Avatar} store=${store} user=${store.me} size=${64} />
          <div><div class="muted">User id</div><strong data-testid="profile-user">${store.me}</strong></div>
        </div>
        <label>Name
          <input data-testid="profile-name" value=${name} maxlength="100" placeholder=${store.me}
            onInput=${(e) => setName(e.currentTarget.value)} />
        </label>
        <label>Picture
          <input type="file" accept="image/*" data-testid="profile-avatar"
            onChange=${(e) => setFile(e.currentTarget.files[0] || null)} />
        </label>
        ${status && html`<div class="muted" data-testid="profile-status">${status}</div>`}
        <button data-testid="profile-save" disabled=${busy}>Save</button>
      </form>
      ${notifications === "default" && html`
        <button class="ghost wide" onClick=${() => askPermission()}>Show notifications for new messages</button>`}
      <button class="ghost wide danger" data-testid="logout" onClick=${() => store.logout()}>Log out</button>
    <//>
  `;
}
