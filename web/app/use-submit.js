// A form's submit handler with its busy flag and the error to show, shared by every form.
import { useState } from "preact/hooks";
import { describe } from "./errors.js";

/** Runs `action` for a form, showing its error; the form stays until it succeeds. */
export function useSubmit(action) {
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  async function submit(e) {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      await action();
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  }
  return { error, busy, submit };
}
