// Signing up, in and out, and the links we email: "#verify=…" confirms
// the address, "#reset=…" sets a new password.

import { $ } from "./dom.js";
import { SESSION_KEY, api, session, whenSessionEnds } from "./api.js";
import { errorText, t } from "./i18n.js";

const RETURNING_KEY = "videoproject.returning";

// what the workspace does when it starts and stops (app.js sets them)
const hooks = { start() {}, stop() {}, recheck() {} };
export function onWorkspace(start, stop, recheck) {
  Object.assign(hooks, { start, stop, recheck });
}

let creating = false; // the form creates an account instead of signing in
let resetSecret = null; // the reset link's, while its card is shown
let verifying = Promise.resolve(); // a verification link being opened

/// A message above the cards, for what a link or a request did.
export function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

function tooMany(e) {
  return e.status === 429 ? t("page.error.too_many") : errorText(e);
}

export function setAuthMode(create) {
  creating = create;
  $("auth-title").textContent = create ? t("page.auth.create_title") : t("page.auth.sign_in");
  $("auth-submit").textContent = create ? t("page.auth.create_submit") : t("page.auth.sign_in");
  $("auth-switch-text").textContent = create ? t("page.auth.have_account") : t("page.auth.no_account");
  $("auth-switch").textContent = create ? t("page.auth.sign_in") : t("page.auth.create_one");
  $("password").autocomplete = create ? "new-password" : "current-password";
  $("password-hint").hidden = !create;
}

async function submitAuth(event, locale) {
  event.preventDefault();
  const email = $("email").value.trim();
  const password = $("password").value;
  const error = $("auth-error");
  error.textContent = "";
  notice("");
  if (!email || !password) {
    error.textContent = t("page.auth.missing");
    (email ? $("password") : $("email")).focus();
    return;
  }
  const button = $("auth-submit");
  button.disabled = true;
  try {
    if (creating) await createAccount(email, password, locale());
    const s = await api("POST", "/sessions", { email, password });
    session.save({ token: s.token, expires_at: s.expires_at, email });
    $("password").value = "";
    startWorkspace();
  } catch (e) {
    error.textContent = tooMany(e);
  } finally {
    button.disabled = false;
  }
}

// the account takes the page's language; an API that does not know the
// field yet makes it without
async function createAccount(email, password, locale) {
  try {
    await api("POST", "/users", { email, password, locale });
  } catch (e) {
    if (e.code !== "invalid_input" || !e.message.includes("locale")) throw e;
    await api("POST", "/users", { email, password });
  }
}

export async function signOut(everywhere = false) {
  try {
    await api("DELETE", everywhere ? "/sessions?everywhere=true" : "/sessions");
  } catch (e) {
    if (everywhere && e.status !== 401) throw e;
  }
  endSession(t("page.auth.signed_out"));
}

export function endSession(message) {
  session.clear();
  creating = false;
  hooks.stop();
  // a new password being chosen stays on screen: its link is gone from the
  // address bar and could not be opened again
  if (resetSecret) return;
  showAuth();
  // signing out is what was asked for, not an error
  notice(message || "");
}

// the cards that take each other's place: signing in, asking for a reset
// link, choosing a new password, and the workspace
function showCard(id) {
  for (const card of ["auth", "forgot", "reset", "workspace"]) $(card).hidden = card !== id;
  $("account").hidden = id !== "workspace";
}

export function showAuth() {
  showCard("auth");
  setAuthMode(creating);
  $("auth-error").textContent = "";
  $("email").focus();
}

export function startWorkspace() {
  showCard("workspace");
  $("who").textContent = session.current.email;
  hooks.start(verifying);
}

// "#verify=…" or "#reset=…": the secret of a link we emailed. It is taken
// out of the address bar at once, so it stays out of the history.
function readLink() {
  const match = /^#(verify|reset)=([0-9a-fA-F]{64})$/.exec(location.hash);
  if (/^#(verify|reset)=/.test(location.hash)) history.replaceState(null, "", location.pathname + location.search);
  return match ? { kind: match[1], secret: match[2] } : null;
}

// Acts on a link from our email; true when it shows a card of its own.
function followLink(link) {
  if (!link) return false;
  if (link.kind === "verify") {
    verifying = openVerifyLink(link.secret);
    return false;
  }
  showReset(link.secret);
  return true;
}

async function openVerifyLink(secret) {
  try {
    const answer = await api("POST", "/email-verifications", { token: secret });
    notice(t("page.verify.confirmed", { email: answer.email }));
  } catch (e) {
    notice(e.code === "link_expired" ? t("page.verify.expired") : errorText(e));
  }
}

export function showVerifyBanner(show, email) {
  $("verify-banner").hidden = !show;
  $("verify-status").textContent = "";
  if (show) $("verify-text").textContent = t("page.verify.banner", { email });
}

async function resendVerification() {
  const button = $("verify-resend");
  button.disabled = true;
  try {
    const answer = await api("POST", "/me/verification-email");
    $("verify-status").textContent = t("page.verify.sent", { email: answer.sent_to });
  } catch (e) {
    if (e.code === "already_verified") showVerifyBanner(false);
    else $("verify-status").textContent = errorText(e);
  } finally {
    button.disabled = false;
  }
}

function showForgot() {
  showCard("forgot");
  $("forgot-email").value = $("email").value.trim();
  $("forgot-error").textContent = "";
  notice("");
  $("forgot-email").focus();
}

async function submitForgot(event) {
  event.preventDefault();
  const email = $("forgot-email").value.trim();
  const error = $("forgot-error");
  error.textContent = "";
  if (!email) {
    error.textContent = t("page.forgot.missing");
    $("forgot-email").focus();
    return;
  }
  const button = $("forgot-submit");
  button.disabled = true;
  try {
    await api("POST", "/password-resets", { email });
    creating = false;
    showAuth();
    $("email").value = email;
    notice(t("page.forgot.sent"));
  } catch (e) {
    error.textContent = tooMany(e);
  } finally {
    button.disabled = false;
  }
}

function showReset(secret) {
  resetSecret = secret;
  // the workspace is not shown: nothing of it keeps running behind the card
  hooks.stop();
  showCard("reset");
  $("reset-error").textContent = "";
  $("new-password").focus();
}

async function submitReset(event) {
  event.preventDefault();
  const password = $("new-password").value;
  const error = $("reset-error");
  error.textContent = "";
  if ([...password].length < 8) {
    error.textContent = t("page.reset.short");
    $("new-password").focus();
    return;
  }
  const button = $("reset-submit");
  button.disabled = true;
  try {
    const answer = await api("POST", "/password-resets/confirm", { token: resetSecret, password });
    resetSecret = null;
    $("new-password").value = "";
    // this browser's session ended with every other
    if (session.current) endSession("");
    creating = false;
    showAuth();
    $("email").value = answer.email;
    $("password").focus();
    notice(t("page.reset.done"));
  } catch (e) {
    error.textContent = e.code === "link_expired" ? t("page.reset.expired") : errorText(e);
  } finally {
    button.disabled = false;
  }
}

/// Wires the cards and shows the first one. `locale()` is the language a
/// new account is made with.
export function startAuth(locale) {
  whenSessionEnds(() => endSession(t("page.auth.session_ended")));
  $("auth-form").addEventListener("submit", (e) => submitAuth(e, locale));
  $("auth-switch").addEventListener("click", () => {
    setAuthMode(!creating);
    $("auth-error").textContent = "";
    $("email").focus();
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("forgot-open").addEventListener("click", showForgot);
  $("forgot-back").addEventListener("click", showAuth);
  $("forgot-form").addEventListener("submit", submitForgot);
  $("reset-form").addEventListener("submit", submitReset);
  $("reset-back").addEventListener("click", () => {
    resetSecret = null;
    if (session.current) startWorkspace();
    else showAuth();
  });
  $("verify-resend").addEventListener("click", resendVerification);

  const link = readLink();
  session.current = session.load();
  if (followLink(link)) { /* the reset card is shown */ }
  else if (session.current) startWorkspace();
  else {
    // a first visit most likely wants an account; a link from our email
    // comes from someone who has one
    creating = !link && localStorage.getItem(RETURNING_KEY) === null;
    showAuth();
  }
  // a link opened in a tab that shows the page already
  window.addEventListener("hashchange", () => {
    if (!followLink(readLink()) && session.current) hooks.recheck(verifying);
  });
  window.addEventListener("storage", (e) => {
    if (e.key === SESSION_KEY && !e.newValue && session.current) endSession(t("page.auth.other_tab"));
  });
  localStorage.setItem(RETURNING_KEY, "1");
}

/// Redraws the texts the code sets, after a change of language.
export function retranslateAuth() {
  setAuthMode(creating);
}
