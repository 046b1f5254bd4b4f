// The account panel: the password, which emails to get, the webhook (its
// secret shown once, when it is made), signing out everywhere, and the
// language.

import { $ } from "./dom.js";
import { api } from "./api.js";
import { errorText, t } from "./i18n.js";
import { endSession, signOut } from "./auth.js";

let me = null; // the profile, as GET /api/v1/me gave it

export function profile() {
  return me;
}

/// Keeps the panel in step with the profile `next`.
export function showProfile(next) {
  me = next;
  $("notify-success").checked = Boolean(me.notify_on_success);
  $("webhook-url").value = me.webhook_url || "";
  $("webhook-rotate").hidden = !me.webhook_url;
  $("webhook-remove").hidden = !me.webhook_url;
}

function toggle(open) {
  $("account-panel").hidden = !open;
  $("account-open").setAttribute("aria-expanded", String(open));
  if (open) {
    $("account-title").focus();
    $("account-panel").scrollIntoView({ block: "start" });
  } else {
    showSecret(null);
    $("account-open").focus();
  }
}

async function changePassword(event) {
  event.preventDefault();
  const current = $("current-password").value;
  const next = $("changed-password").value;
  $("password-error").textContent = "";
  $("password-status").textContent = "";
  if (!current) {
    $("password-error").textContent = t("page.account.current_missing");
    return $("current-password").focus();
  }
  if ([...next].length < 8) {
    $("password-error").textContent = t("page.reset.short");
    return $("changed-password").focus();
  }
  const button = $("password-submit");
  button.disabled = true;
  try {
    await api("POST", "/me/password", { current_password: current, new_password: next });
    $("current-password").value = "";
    $("changed-password").value = "";
    $("password-status").textContent = t("page.account.password_changed");
  } catch (e) {
    $("password-error").textContent = e.code === "invalid_credentials"
      ? t("page.account.password_wrong")
      : errorText(e);
  } finally {
    button.disabled = false;
  }
}

async function patchMe(body, status) {
  status.textContent = "";
  try {
    const answer = await api("PATCH", "/me", body);
    showProfile(answer);
    return answer;
  } catch (e) {
    status.textContent = errorText(e);
    return null;
  }
}

async function saveNotify() {
  const on = $("notify-success").checked;
  const answer = await patchMe({ notify_on_success: on }, $("notify-status"));
  if (answer) $("notify-status").textContent = on ? t("page.account.notify_on") : t("page.account.notify_off");
}

// the secret, right after it was made; afterwards it is not shown again
function showSecret(answer) {
  const secret = answer && answer.webhook_secret;
  $("webhook-secret-box").hidden = !secret;
  $("webhook-secret").textContent = secret || "";
}

async function saveWebhook(event) {
  event.preventDefault();
  const url = $("webhook-url").value.trim();
  const hadOne = Boolean(me && me.webhook_url);
  const answer = await patchMe({ webhook_url: url || null }, $("webhook-error"));
  if (answer && url && !hadOne) showSecret(answer);
}

async function rotate() {
  showSecret(await patchMe({ rotate_webhook_secret: true }, $("webhook-error")));
}

async function removeWebhook() {
  const answer = await patchMe({ webhook_url: null }, $("webhook-error"));
  if (answer) showSecret(null);
}

async function everywhere(button) {
  button.disabled = true;
  try {
    await signOut(true);
  } catch (e) {
    // an API without it yet: this browser signs out at least
    endSession(errorText(e));
  } finally {
    button.disabled = false;
  }
}

/// Saves the language on the account, when signed in.
export async function saveLocale(locale) {
  if (!me || me.locale === locale) return;
  try {
    showProfile(await api("PATCH", "/me", { locale }));
  } catch (_) { /* the page follows the choice anyway; the account keeps its own */ }
}

export function closeAccount() {
  $("account-panel").hidden = true;
  $("account-open").setAttribute("aria-expanded", "false");
  showSecret(null);
}

export function startAccount() {
  $("account-title").tabIndex = -1;
  $("account-open").addEventListener("click", () => toggle($("account-panel").hidden));
  $("account-close").addEventListener("click", () => toggle(false));
  $("password-form").addEventListener("submit", changePassword);
  $("notify-success").addEventListener("change", saveNotify);
  $("webhook-form").addEventListener("submit", saveWebhook);
  $("webhook-rotate").addEventListener("click", rotate);
  $("webhook-remove").addEventListener("click", removeWebhook);
  $("sign-out-everywhere").addEventListener("click", (e) => everywhere(e.currentTarget));
}
