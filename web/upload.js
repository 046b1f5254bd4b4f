// Uploading: the files chosen or dropped each get a row at once, and go
// a few at a time through XMLHttpRequest (the one browser API that reports
// upload progress). Each can be stopped; one that fails does not hold up
// the others.

import { $, announce, fromTemplate } from "./dom.js";
import { API, ApiError, retryAfter, session, sessionEnded } from "./api.js";
import { errorText, t, translate } from "./i18n.js";
import { bytes, clock, percent } from "./format.js";

const AT_ONCE = 3;

// what a finished upload hands on (videos.js's upsert; app.js sets it)
let uploaded = () => {};
let refused = () => {};
export function onUploaded(done, failed) {
  uploaded = done;
  refused = failed;
}

const queue = []; // uploads waiting for a slot
const running = new Set();

/// The frame options of a form (the upload's, or a "process again" one)
/// as name → value, leaving out what the API defaults.
export function readOptions(form) {
  const field = (name) => form.querySelector(`[name=${name}]`);
  const counting = form.querySelector("[value=count]").checked;
  const fields = {};
  if (counting) fields.count = field("count").value.trim();
  else fields.interval = field("interval").value.trim();
  fields.format = field("format").value;
  const width = field("width").value.trim();
  if (width) fields.width = width;
  return fields;
}

/// Keeps the number fields of a form in step with its mode.
export function syncMode(form) {
  const counting = form.querySelector("[value=count]").checked;
  form.querySelector("[name=count]").disabled = !counting;
  form.querySelector("[name=interval]").disabled = counting;
}

function chosenFiles() {
  return [...($("file").files || [])];
}

function showChosen() {
  const files = chosenFiles();
  const total = files.reduce((sum, f) => sum + f.size, 0);
  $("file-info").textContent = files.length === 1
    ? `${files[0].name}, ${bytes(files[0].size)}`
    : files.length ? t("page.upload.chosen", { count: files.length, size: bytes(total) }) : "";
}

class Upload {
  constructor(file, options) {
    this.file = file;
    this.options = options;
    this.xhr = null;
    this.row = fromTemplate("upload-template");
    translate(this.row);
    this.row.querySelector(".name").textContent = file.name;
    this.row.querySelector(".upload-stop").addEventListener("click", () => this.stop());
    this.row.querySelector(".upload-retry").addEventListener("click", () => this.enqueue());
    this.row.querySelector(".upload-dismiss").addEventListener("click", () => this.row.remove());
    this.row.querySelector(".upload-stop").setAttribute("aria-label", t("page.upload.stop_named", { name: file.name }));
    $("uploads").appendChild(this.row);
  }

  show(state, label, error = "") {
    this.row.dataset.state = state;
    this.row.querySelector(".status").textContent = state === "waiting" ? t("page.upload.state_waiting")
      : state === "sending" ? t("page.upload.state_sending") : t("page.upload.state_failed");
    this.row.querySelector(".upload-label").textContent = label;
    this.row.querySelector(".upload-error").textContent = error;
    this.row.querySelector(".upload-stop").hidden = state !== "waiting" && state !== "sending";
    this.row.querySelector(".upload-retry").hidden = state !== "failed";
    this.row.querySelector(".upload-dismiss").hidden = state !== "failed";
  }

  enqueue() {
    this.show("waiting", t("page.upload.waiting"));
    this.row.querySelector(".progress").value = 0;
    queue.push(this);
    pump();
  }

  stop() {
    const at = queue.indexOf(this);
    if (at >= 0) queue.splice(at, 1);
    if (this.xhr) this.xhr.abort();
    else this.row.remove();
    // stopping is what was asked for: it is said, not shown as an error
    announce(t("page.upload.stopped", { name: this.file.name }));
  }

  finish() {
    running.delete(this);
    this.xhr = null;
    pump();
  }

  send() {
    running.add(this);
    const form = new FormData();
    for (const [name, value] of Object.entries(this.options)) form.append(name, value);
    form.append("video", this.file, this.file.name);
    const xhr = new XMLHttpRequest();
    this.xhr = xhr;
    const bar = this.row.querySelector(".progress");
    const started = performance.now();
    let last = { at: started, loaded: 0 };
    let speed = 0;
    this.show("sending", t("page.upload.progress_start", { total: bytes(this.file.size) }));

    xhr.upload.addEventListener("progress", (e) => {
      const now = performance.now();
      const total = e.lengthComputable ? e.total : this.file.size;
      // speed: a moving average, so the number does not jitter
      if (now - last.at >= 200) {
        const recent = ((e.loaded - last.loaded) * 1000) / (now - last.at);
        speed = speed ? 0.7 * speed + 0.3 * recent : recent;
        last = { at: now, loaded: e.loaded };
      }
      const rate = speed || (e.loaded * 1000) / Math.max(now - started, 1);
      const left = rate > 0 ? clock((total - e.loaded) / rate) : "…";
      bar.value = total ? e.loaded / total : 0;
      this.row.querySelector(".upload-label").textContent = t("page.upload.progress", {
        percent: percent(bar.value), sent: bytes(e.loaded), total: bytes(total),
        speed: bytes(rate), left,
      });
    });
    xhr.upload.addEventListener("load", () => {
      bar.value = 1;
      this.row.querySelector(".upload-label").textContent = t("page.upload.checking", { total: bytes(this.file.size) });
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      this.finish();
      if (xhr.status === 202 || xhr.status === 200) {
        this.row.remove();
        uploaded(body.video);
        announce(t("page.upload.done", { name: this.file.name }));
        return;
      }
      if (xhr.status === 401) {
        this.row.remove();
        sessionEnded();
        return;
      }
      this.failed(new ApiError(xhr.status, body, retryAfter(xhr.getResponseHeader("Retry-After"))));
    });
    xhr.addEventListener("error", () => {
      this.finish();
      this.failed(new ApiError(0, { error: { code: "offline", message: t("page.upload.cut_off") } }));
    });
    xhr.addEventListener("abort", () => {
      this.finish();
      this.row.remove();
    });
    xhr.open("POST", API + "/videos");
    for (const [name, value] of Object.entries(session.header())) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader("Accept", "application/json");
    // a retry of the same upload (say, after a lost answer) makes no second video
    xhr.setRequestHeader("Idempotency-Key", crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2));
    xhr.send(form);
  }

  failed(error) {
    // a refused upload may have shown up in the list while it streamed
    refused();
    this.show("failed", "", whyRefused(error));
  }
}

/// An error for people, with when to try again when the API says so.
export function whyRefused(error) {
  const text = errorText(error);
  return error.retryAfter ? `${text} ${t("page.error.retry_in", { seconds: error.retryAfter })}` : text;
}

function pump() {
  while (running.size < AT_ONCE && queue.length && session.current) queue.shift().send();
}

function submit(event) {
  event.preventDefault();
  $("upload-error").textContent = "";
  const files = chosenFiles();
  if (!files.length) {
    $("upload-error").textContent = t("page.upload.none");
    $("file").focus();
    return;
  }
  const options = readOptions($("upload-form"));
  for (const file of files) new Upload(file, options).enqueue();
  $("file").value = "";
  showChosen();
}

/// Stops every upload (signing out).
export function stopAll() {
  queue.length = 0;
  for (const upload of [...running]) upload.xhr && upload.xhr.abort();
  $("uploads").replaceChildren();
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

export function startUploads() {
  const form = $("upload-form");
  form.addEventListener("submit", submit);
  $("file").addEventListener("change", showChosen);
  for (const radio of form.querySelectorAll("[name=mode]")) radio.addEventListener("change", () => syncMode(form));
  setUpDrop();
  syncMode(form);
}

/// Redraws the chosen files' line after a change of language.
export function retranslateUploads() {
  showChosen();
}
