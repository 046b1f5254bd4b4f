// The Video Project's page. It speaks the public API (/api/v1) like any
// client: a session token kept in this browser, uploads through
// XMLHttpRequest (the one browser API that reports upload progress), and
// one server-sent event stream for every change to the user's videos.
// Text reaches the page through textContent only, never as HTML.
"use strict";

const API = "/api/v1";
const SESSION_KEY = "videoproject.session";
// a download link is good for 15 minutes; older ones are refreshed first
const LINK_FRESH_MS = 10 * 60 * 1000;
const RETRY_MAX_MS = 15000;

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `The server answered ${status}.`);
    this.status = status;
    this.code = error.code || "http_" + status;
    this.field = error.field || null;
  }
}

// ---- the session ---------------------------------------------------------

const session = {
  load() {
    try {
      const s = JSON.parse(localStorage.getItem(SESSION_KEY));
      if (s && s.token && Date.parse(s.expires_at) > Date.now()) return s;
    } catch (_) { /* unreadable: signed out */ }
    return null;
  },
  save(s) { localStorage.setItem(SESSION_KEY, JSON.stringify(s)); },
  clear() { localStorage.removeItem(SESSION_KEY); },
};

let current = null; // {token, expires_at, email}

// a busy node answers 503 with Retry-After: reads and deletes (which are
// safe to repeat) wait and try again a few times before giving up
const BUSY_RETRIES = 3;

async function api(method, path, body, attempt = 0) {
  const headers = { Accept: "application/json" };
  if (current) headers.Authorization = "Bearer " + current.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (_) {
    throw new ApiError(0, { error: { message: "The server cannot be reached. Check your connection and try again." } });
  }
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  const wait = Number(response.headers.get("Retry-After"));
  if (response.status === 503 && (method === "GET" || method === "DELETE") &&
      attempt < BUSY_RETRIES && wait > 0 && wait <= 10) {
    await new Promise((r) => setTimeout(r, wait * 1000));
    return api(method, path, body, attempt + 1);
  }
  if (!response.ok) {
    const error = new ApiError(response.status, json);
    if (response.status === 401 && current) endSession("Your session has ended. Please sign in again.");
    throw error;
  }
  return json;
}

// ---- signing in and out --------------------------------------------------

let creating = false; // the form creates an account instead of signing in

function setAuthMode(create) {
  creating = create;
  $("auth-title").textContent = create ? "Create an account" : "Sign in";
  $("auth-submit").textContent = create ? "Create account" : "Sign in";
  $("auth-switch-text").textContent = create ? "Have an account?" : "No account yet?";
  $("auth-switch").textContent = create ? "Sign in" : "Create one";
  $("password").autocomplete = create ? "new-password" : "current-password";
  $("password-hint").hidden = !create;
  $("auth-error").textContent = "";
}

async function submitAuth(event) {
  event.preventDefault();
  const email = $("email").value.trim();
  const password = $("password").value;
  const error = $("auth-error");
  error.textContent = "";
  notice("");
  if (!email || !password) {
    error.textContent = "Enter your email and password.";
    (email ? $("password") : $("email")).focus();
    return;
  }
  const button = $("auth-submit");
  button.disabled = true;
  try {
    if (creating) await api("POST", "/users", { email, password });
    const s = await api("POST", "/sessions", { email, password });
    current = { token: s.token, expires_at: s.expires_at, email };
    session.save(current);
    $("password").value = "";
    startWorkspace();
  } catch (e) {
    error.textContent = e.status === 429 ? "Too many attempts. Wait a little and try again." : e.message;
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  try { await api("DELETE", "/sessions"); } catch (_) { /* signed out here anyway */ }
  endSession("You are signed out.");
}

function endSession(message) {
  current = null;
  creating = false;
  session.clear();
  live.stop();
  videos.clear();
  // a new password being chosen stays on screen: its link is gone from the
  // address bar and could not be opened again
  if (resetSecret) return;
  showAuth();
  $("auth-error").textContent = message || "";
}

// the cards that take each other's place: signing in, asking for a reset
// link, choosing a new password, and the workspace
function showCard(id) {
  for (const card of ["auth", "forgot", "reset", "workspace"]) $(card).hidden = card !== id;
  $("account").hidden = id !== "workspace";
}

function showAuth() {
  showCard("auth");
  setAuthMode(creating);
  $("email").focus();
}

function startWorkspace() {
  showCard("workspace");
  $("who").textContent = current.email;
  videos.reload();
  live.start();
  checkVerified();
}

// ---- links from our emails -----------------------------------------------

// a message above the cards, for what a link or a request did
function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

// "#verify=…" or "#reset=…": the secret of a link we emailed. It is taken
// out of the address bar at once, so it stays out of the history.
function readLink() {
  const match = /^#(verify|reset)=([0-9a-fA-F]{64})$/.exec(location.hash);
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  return match ? { kind: match[1], secret: match[2] } : null;
}

let verifying = Promise.resolve(); // a verification link being opened

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
    notice(`Thank you: ${answer.email} is confirmed.`);
  } catch (e) {
    notice(e.code === "link_expired"
      ? "This confirmation link was used already or has expired. If your address is not confirmed yet, sign in and ask for a new link."
      : e.message);
  }
}

async function checkVerified() {
  await verifying;
  try {
    const me = await api("GET", "/me");
    showVerifyBanner(!me.email_verified, me.email);
  } catch (_) { /* asked again at the next start */ }
}

function showVerifyBanner(show, email) {
  $("verify-banner").hidden = !show;
  $("verify-status").textContent = "";
  if (show) {
    $("verify-text").textContent = `Confirm your address: we emailed a link to ${email}. ` +
      "Until you open it, we send you at most a few emails a day about your videos.";
  }
}

async function resendVerification() {
  const button = $("verify-resend");
  button.disabled = true;
  try {
    const answer = await api("POST", "/me/verification-email");
    $("verify-status").textContent = `A new link is on its way to ${answer.sent_to}.`;
  } catch (e) {
    if (e.code === "already_verified") showVerifyBanner(false);
    else $("verify-status").textContent = e.message;
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
    error.textContent = "Enter the email of your account.";
    $("forgot-email").focus();
    return;
  }
  const button = $("forgot-submit");
  button.disabled = true;
  try {
    const answer = await api("POST", "/password-resets", { email });
    creating = false;
    showAuth();
    $("email").value = email;
    notice(answer.message + " The link works once, for a short while.");
  } catch (e) {
    error.textContent = e.status === 429 ? "Too many requests. Wait a little and try again." : e.message;
  } finally {
    button.disabled = false;
  }
}

let resetSecret = null; // the reset link's, while its card is shown

function showReset(secret) {
  resetSecret = secret;
  // the workspace is not shown: nothing of it keeps running behind the card
  live.stop();
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
    error.textContent = "The password must be at least 8 characters.";
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
    if (current) endSession("");
    creating = false;
    showAuth();
    $("email").value = answer.email;
    $("password").focus();
    notice("Your new password is set, and every device was signed out. Sign in with it.");
  } catch (e) {
    error.textContent = e.code === "link_expired"
      ? "This link was used already or has expired. Ask for a new one from the sign-in page."
      : e.message;
  } finally {
    button.disabled = false;
  }
}

// ---- numbers for people --------------------------------------------------

function bytes(n) {
  if (n == null) return "";
  const units = ["bytes", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
}

function percent(p) { return Math.floor((p || 0) * 100) + "%"; }

// ---- uploading -----------------------------------------------------------

let uploading = null; // the XMLHttpRequest in flight

function chosenFile() {
  const files = $("file").files;
  return files && files.length ? files[0] : null;
}

function showChosen() {
  const file = chosenFile();
  $("file-info").textContent = file ? `${file.name}, ${bytes(file.size)}` : "";
}

function options() {
  const fields = [];
  if ($("mode-count").checked) fields.push(["count", $("count").value.trim()]);
  else fields.push(["interval", $("interval").value.trim()]);
  fields.push(["format", $("format").value]);
  const width = $("width").value.trim();
  if (width) fields.push(["width", width]);
  return fields;
}

function uploadError(message, field) {
  $("upload-error").textContent = message;
  const input = field && $(field === "video" ? "file" : field);
  if (input) input.focus();
}

function submitUpload(event) {
  event.preventDefault();
  if (uploading) return;
  $("upload-error").textContent = "";
  const file = chosenFile();
  if (!file) return uploadError("Choose a video first.", "video");
  const form = new FormData();
  for (const [name, value] of options()) form.append(name, value);
  form.append("video", file, file.name);

  const xhr = new XMLHttpRequest();
  uploading = xhr;
  const progress = $("upload-progress");
  const label = $("upload-label");
  const started = performance.now();
  let last = { at: started, loaded: 0 };
  let speed = 0;
  progress.value = 0;
  label.textContent = `0 of ${bytes(file.size)}`;
  $("upload-status").hidden = false;
  $("upload-submit").disabled = true;

  xhr.upload.addEventListener("progress", (e) => {
    const now = performance.now();
    const total = e.lengthComputable ? e.total : file.size;
    // speed: a moving average, so the number does not jitter
    if (now - last.at >= 200) {
      const recent = ((e.loaded - last.loaded) * 1000) / (now - last.at);
      speed = speed ? 0.7 * speed + 0.3 * recent : recent;
      last = { at: now, loaded: e.loaded };
    }
    progress.value = total ? e.loaded / total : 0;
    const rate = speed || (e.loaded * 1000) / Math.max(now - started, 1);
    label.textContent = `${bytes(e.loaded)} of ${bytes(total)} · ${bytes(rate)}/s`;
  });
  xhr.upload.addEventListener("load", () => {
    progress.value = 1;
    label.textContent = `${bytes(file.size)} sent · checking the video…`;
  });
  const finish = (message) => {
    uploading = null;
    $("upload-submit").disabled = false;
    $("upload-status").hidden = true;
    if (message) uploadError(message);
  };
  xhr.addEventListener("load", () => {
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 202 || xhr.status === 200) {
      finish();
      $("upload-form").reset();
      syncMode();
      showChosen();
      videos.upsert(body.video);
      announce(`${body.video.filename} uploaded.`);
      return;
    }
    const error = new ApiError(xhr.status, body);
    if (xhr.status === 401) {
      finish();
      endSession("Your session has ended. Please sign in again.");
      return;
    }
    finish();
    // a refused upload may have shown up in the list while it streamed
    videos.reload();
    const retry = xhr.getResponseHeader("Retry-After");
    uploadError(error.message + (retry ? ` Try again in ${retry} s.` : ""), error.field);
  });
  xhr.addEventListener("error", () => finish("The upload was cut off. Check your connection and try again."));
  xhr.addEventListener("abort", () => finish("Upload stopped."));
  xhr.open("POST", API + "/videos");
  xhr.setRequestHeader("Authorization", "Bearer " + current.token);
  xhr.setRequestHeader("Accept", "application/json");
  // a retry of the same upload (say, after a lost answer) makes no second video
  xhr.setRequestHeader("Idempotency-Key", crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2));
  xhr.send(form);
}

function syncMode() {
  const counting = $("mode-count").checked;
  $("count").disabled = !counting;
  $("interval").disabled = counting;
}

function setUpDrop() {
  const zone = $("drop");
  const over = (on) => (e) => {
    e.preventDefault();
    zone.classList.toggle("over", on);
  };
  zone.addEventListener("dragenter", over(true));
  zone.addEventListener("dragover", over(true));
  zone.addEventListener("dragleave", over(false));
  zone.addEventListener("drop", (e) => {
    over(false)(e);
    if (e.dataTransfer && e.dataTransfer.files.length) {
      $("file").files = e.dataTransfer.files;
      showChosen();
    }
  });
  // a file dropped beside the zone must not replace the page
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (e) => e.preventDefault());
  }
}

// ---- the list of videos --------------------------------------------------

const STATUS_TEXT = {
  uploading: "Uploading",
  queued: "Waiting",
  processing: "Processing",
  done: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
};

const videos = {
  byId: new Map(),
  items: new Map(), // id -> <li>
  cursor: null,

  clear() {
    this.byId.clear();
    this.items.clear();
    this.cursor = null;
    $("videos").replaceChildren();
  },

  async reload() {
    try {
      const page = await api("GET", "/videos?limit=50");
      const seen = new Set(page.videos.map((v) => v.id));
      // videos deleted elsewhere leave the list
      for (const id of [...this.byId.keys()]) {
        if (!seen.has(id) && this.isNewerThanPage(id, page)) this.remove(id);
      }
      page.videos.forEach((v) => this.upsert(v));
      if (this.cursor === null || this.byId.size <= page.videos.length) this.cursor = page.next_cursor;
      this.showEmpty();
    } catch (e) {
      $("live").textContent = e.message;
    }
  },

  isNewerThanPage(id, page) {
    const last = page.videos[page.videos.length - 1];
    return !page.next_cursor || !last || this.byId.get(id).created_at >= last.created_at;
  },

  async more() {
    if (!this.cursor) return;
    const page = await api("GET", "/videos?limit=50&cursor=" + encodeURIComponent(this.cursor));
    page.videos.forEach((v) => this.upsert(v));
    this.cursor = page.next_cursor;
    this.showEmpty();
  },

  showEmpty() {
    $("videos-empty").hidden = this.byId.size > 0;
    $("more").hidden = !this.cursor;
  },

  upsert(video) {
    const known = this.byId.get(video.id);
    // events can arrive after a fresher answer: keep the newest
    if (known && known.updated_at > video.updated_at) return;
    if (known && known.status !== video.status) this.announceChange(video);
    video.linked_at = Date.now();
    this.byId.set(video.id, video);
    let item = this.items.get(video.id);
    if (!item) {
      item = $("video-template").content.firstElementChild.cloneNode(true);
      item.querySelector(".remove").addEventListener("click", (e) => this.onRemove(video.id, e.currentTarget));
      item.querySelector(".download").addEventListener("click", (e) => this.onDownload(video.id, e));
      this.items.set(video.id, item);
      this.place(item, video);
    }
    render(item, video);
    this.showEmpty();
  },

  // newest first, as the API lists them
  place(item, video) {
    const list = $("videos");
    for (const other of list.children) {
      const v = this.byId.get(other.dataset.id);
      if (v && v.created_at < video.created_at) {
        list.insertBefore(item, other);
        return;
      }
    }
    list.appendChild(item);
  },

  remove(id) {
    const item = this.items.get(id);
    if (item) item.remove();
    this.items.delete(id);
    this.byId.delete(id);
    this.showEmpty();
  },

  announceChange(video) {
    if (video.status === "done") announce(`${video.filename} is done: ${video.frames} frames.`);
    else if (video.status === "failed") announce(`${video.filename} failed: ${video.error || "no reason given"}`);
  },

  async onRemove(id, button) {
    const video = this.byId.get(id);
    // a second press within a few seconds confirms
    if (!button.dataset.armed) {
      button.dataset.armed = "1";
      button.textContent = running(video) ? "Press again to cancel" : "Press again to delete";
      setTimeout(() => {
        delete button.dataset.armed;
        render(this.items.get(id), this.byId.get(id));
      }, 4000);
      return;
    }
    button.disabled = true;
    try {
      await api("DELETE", "/videos/" + encodeURIComponent(id));
      this.remove(id);
      announce(`${video.filename} deleted.`);
    } catch (e) {
      if (e.status === 404) this.remove(id);
      else { button.disabled = false; $("live").textContent = e.message; }
    }
  },

  async onDownload(id, event) {
    const video = this.byId.get(id);
    if (Date.now() - video.linked_at < LINK_FRESH_MS) return; // the link is fresh: follow it
    event.preventDefault();
    try {
      const fresh = await api("GET", "/videos/" + encodeURIComponent(id));
      this.upsert(fresh.video);
      if (fresh.video.download_url) {
        const link = this.items.get(id).querySelector(".download");
        link.href = fresh.video.download_url;
        link.click();
      }
    } catch (e) {
      $("live").textContent = e.message;
    }
  },
};

function running(video) {
  return video.status === "queued" || video.status === "processing" || video.status === "uploading";
}

function render(item, video) {
  item.dataset.id = video.id;
  item.dataset.status = video.status;
  item.querySelector(".name").textContent = video.filename;
  const status = item.querySelector(".status");
  status.textContent = STATUS_TEXT[video.status] || video.status;
  status.className = "status " + video.status;

  const progress = item.querySelector(".progress");
  progress.hidden = !running(video);
  progress.value = video.progress || 0;
  progress.setAttribute("aria-label", `${video.filename}: ${percent(video.progress)} processed`);

  let detail = `${bytes(video.size_bytes)} uploaded`;
  if (video.status === "processing") detail = `${percent(video.progress)} of the frames taken`;
  if (video.status === "queued") detail = "Waiting for a free worker";
  if (video.status === "done") {
    detail = `${video.frames} frames` + (video.download_url ? `, ${bytes(video.zip_bytes)} zip` : ", no longer kept");
  }
  item.querySelector(".detail").textContent = detail;

  const failure = item.querySelector(".failure");
  failure.hidden = !video.error;
  failure.textContent = video.error || "";

  const download = item.querySelector(".download");
  download.hidden = !video.download_url;
  if (video.download_url) {
    download.href = video.download_url;
    download.setAttribute("aria-label", `Download the frames of ${video.filename}`);
  }
  const remove = item.querySelector(".remove");
  if (!remove.dataset.armed) {
    remove.textContent = running(video) ? "Cancel" : "Delete";
    remove.setAttribute("aria-label", `${remove.textContent} ${video.filename}`);
  }
}

function announce(text) {
  $("announce").textContent = text;
}

// ---- live changes --------------------------------------------------------

// EventSource cannot send the Authorization header, so the stream is read
// with fetch: the same text/event-stream, parsed here.
const live = {
  controller: null,
  retry: 1000,

  start() {
    this.stop();
    const controller = new AbortController();
    this.controller = controller;
    this.run(controller).catch(() => {});
  },

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  },

  async run(controller) {
    while (!controller.signal.aborted && current) {
      try {
        const response = await fetch(API + "/events", {
          headers: { Authorization: "Bearer " + current.token, Accept: "text/event-stream" },
          signal: controller.signal,
        });
        if (response.status === 401) return endSession("Your session has ended. Please sign in again.");
        if (!response.ok || !response.body) throw new Error("stream refused: " + response.status);
        this.retry = 1000;
        $("live").textContent = "Live: changes appear as they happen.";
        await readEvents(response.body, (type, data) => {
          if (type === "video") videos.upsert(JSON.parse(data).video);
        });
      } catch (_) {
        if (controller.signal.aborted) return;
      }
      $("live").textContent = "Reconnecting for live changes…";
      await new Promise((r) => setTimeout(r, this.retry));
      this.retry = Math.min(this.retry * 2, RETRY_MAX_MS);
      // changes made while away come with a fresh list
      if (!controller.signal.aborted && current) await videos.reload();
    }
  },
};

async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "event") type = text;
        else if (field === "data") data.push(text);
      }
      if (data.length) onEvent(type, data.join("\n"));
    }
  }
}

// ---- start ---------------------------------------------------------------

function main() {
  $("auth-form").addEventListener("submit", submitAuth);
  $("auth-switch").addEventListener("click", () => {
    setAuthMode(!creating);
    $("email").focus();
  });
  $("sign-out").addEventListener("click", signOut);
  $("upload-form").addEventListener("submit", submitUpload);
  $("upload-abort").addEventListener("click", () => uploading && uploading.abort());
  $("file").addEventListener("change", showChosen);
  $("mode-interval").addEventListener("change", syncMode);
  $("mode-count").addEventListener("change", syncMode);
  $("more").addEventListener("click", () => videos.more().catch((e) => ($("live").textContent = e.message)));
  $("forgot-open").addEventListener("click", showForgot);
  $("forgot-back").addEventListener("click", () => { showAuth(); });
  $("forgot-form").addEventListener("submit", submitForgot);
  $("reset-form").addEventListener("submit", submitReset);
  $("reset-back").addEventListener("click", () => {
    resetSecret = null;
    if (current) startWorkspace();
    else showAuth();
  });
  $("verify-resend").addEventListener("click", resendVerification);
  setUpDrop();
  syncMode();

  const link = readLink();
  current = session.load();
  if (followLink(link)) { /* the reset card is shown */ }
  else if (current) startWorkspace();
  else {
    // a first visit most likely wants an account; a link from our email
    // comes from someone who has one
    creating = !link && localStorage.getItem("videoproject.returning") === null;
    showAuth();
  }
  // a link opened in a tab that shows the page already
  window.addEventListener("hashchange", () => {
    if (!followLink(readLink()) && current) checkVerified();
  });
  window.addEventListener("storage", (e) => {
    if (e.key === SESSION_KEY && !e.newValue && current) endSession("You signed out in another tab.");
  });
  localStorage.setItem("videoproject.returning", "1");
}

main();
