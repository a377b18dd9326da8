// The login screen: user id and password, exchanged for a login token.
import { useState } from "preact/hooks";
import { html } from "./html.js";
import { useSubmit } from "./use-submit.js";

/** The login form; `onLogin(user, password)` resolves or throws an error to show. */
export function Login({ onLogin, busy: connecting, notice }) {
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const { error, busy, submit } = useSubmit(() => onLogin?.(user.trim(), password));

  return html`
    <form class="login" data-testid="login-form" onSubmit=${submit}>
      <h1>chatd</h1>
      <input data-testid="login-user" placeholder="User id" autocomplete="username"
        value=${user} onInput=${(e) => setUser(e.currentTarget.value)} required />
      <input data-testid="login-password" type="password" placeholder="Password"
        autocomplete="current-password" value=${password}
        onInput=${(e) => setPassword(e.currentTarget.value)} required />
      ${(error || notice) && html`<div class="error" data-testid="login-error">${error || notice}</div>`}
      <button data-testid="login-submit" disabled=${busy || connecting}>
        ${connecting ? "Connecting…" : "Log in"}
      </button>
    </form>
  `;
}
