// A done video's frames on screen: a strip of thumbnails in its row,
// loaded when the row comes into view, and a viewer that steps through
// every frame, a page of them at a time. Nothing here holds more than one
// page of frames' images at once, so a video of 10 000 frames stays light.

import { $ } from "./dom.js";
import { api } from "./api.js";
import { errorText, t } from "./i18n.js";
import { number, timestamp } from "./format.js";

const STRIP = 12; // thumbnails in a row
const PAGE = 50; // frames the viewer asks for at a time
const SWIPE_PX = 40;

function pageUrl(framesUrl, limit, cursor) {
  const join = framesUrl.includes("?") ? "&" : "?";
  return `${framesUrl}${join}limit=${limit}` + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
}

// rows whose strip waits for the row to be seen
const waiting = new WeakMap();
const observer = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        observer.unobserve(entry.target);
        const load = waiting.get(entry.target);
        waiting.delete(entry.target);
        if (load) load();
      }
    }, { rootMargin: "200px" })
  : null;

/// Shows the strip of `video`'s row `item`, when the video has frames to show.
export function mountStrip(item, video) {
  const strip = item.querySelector(".strip");
  const wanted = video.status === "done" && video.frames_url ? video.frames_url : null;
  if (strip.dataset.source === (wanted || "")) return;
  strip.dataset.source = wanted || "";
  strip.replaceChildren();
  strip.hidden = !wanted;
  if (!wanted) return;
  const load = () => loadStrip(strip, video).catch((e) => {
    strip.textContent = errorText(e);
  });
  if (observer) {
    waiting.set(strip, load);
    observer.observe(strip);
  } else {
    load();
  }
}

async function loadStrip(strip, video) {
  const page = await api("GET", pageUrl(video.frames_url, STRIP));
  const list = document.createElement("ul");
  list.className = "thumbs";
  list.setAttribute("aria-label", t("page.frames.strip_label", { name: video.name || video.filename }));
  page.frames.forEach((frame, at) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thumb";
    button.dataset.index = String(frame.index);
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.src = frame.thumbnail_url;
    img.alt = t("page.frames.at", { time: timestamp(frame.t) });
    if (frame.width && frame.height) {
      img.width = 120;
      img.height = Math.round((120 * frame.height) / frame.width);
    }
    button.appendChild(img);
    button.addEventListener("click", () => viewer.open(video, page, at));
    li.appendChild(button);
    list.appendChild(li);
  });
  strip.replaceChildren(list);
  const count = page.count ?? video.frames;
  if (count > page.frames.length) {
    const all = document.createElement("button");
    all.type = "button";
    all.className = "quiet all-frames";
    all.textContent = t("page.frames.all", { count });
    all.addEventListener("click", () => viewer.open(video, page, 0));
    strip.appendChild(all);
  }
}

/// The viewer: one frame, large, with its time; arrows, Escape and swipes.
export const viewer = {
  video: null,
  frames: [],
  next: null,
  count: 0,
  at: 0,
  loading: null,

  open(video, page, at) {
    this.video = video;
    this.frames = page.frames.slice();
    this.next = page.next_cursor;
    this.count = page.count ?? video.frames ?? page.frames.length;
    this.at = at;
    this.opener = document.activeElement;
    const dialog = $("viewer");
    if (!dialog.open) dialog.showModal();
    this.show();
    $("viewer-next").focus();
  },

  close() {
    const dialog = $("viewer");
    if (dialog.open) dialog.close();
  },

  async step(by) {
    const to = this.at + by;
    if (to < 0) return;
    if (to >= this.frames.length) {
      if (!this.next) return;
      await this.fetchMore();
      if (to >= this.frames.length) return;
    }
    this.at = to;
    this.show();
  },

  // the next page, once, however many presses ask for it
  fetchMore() {
    if (!this.loading) {
      const url = pageUrl(this.video.frames_url, PAGE, this.next);
      this.loading = api("GET", url).then((page) => {
        this.frames.push(...page.frames);
        this.next = page.next_cursor;
      }).catch((e) => {
        $("viewer-time").textContent = errorText(e);
      }).finally(() => {
        this.loading = null;
      });
    }
    return this.loading;
  },

  show() {
    const frame = this.frames[this.at];
    if (!frame) return;
    const dialog = $("viewer");
    dialog.dataset.index = String(frame.index);
    const image = $("viewer-image");
    image.src = frame.url;
    image.alt = t("page.frames.at", { time: timestamp(frame.t) });
    $("viewer-title").textContent = this.video.name || this.video.filename;
    $("viewer-time").textContent = t("page.viewer.position", {
      number: number(frame.index + 1), count: number(this.count), time: timestamp(frame.t),
    });
    const link = $("viewer-download");
    link.href = frame.url;
    link.download = `frame-${String(frame.index + 1).padStart(5, "0")}`;
    $("viewer-prev").disabled = this.at === 0;
    $("viewer-next").disabled = this.at >= this.frames.length - 1 && !this.next;
    // the next frame is fetched before it is asked for
    const ahead = this.frames[this.at + 1];
    if (ahead) new Image().src = ahead.url;
    else if (this.next) this.fetchMore();
  },
};

export function startViewer() {
  const dialog = $("viewer");
  $("viewer-close").addEventListener("click", () => viewer.close());
  $("viewer-prev").addEventListener("click", () => viewer.step(-1));
  $("viewer-next").addEventListener("click", () => viewer.step(1));
  dialog.addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight") { e.preventDefault(); viewer.step(1); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); viewer.step(-1); }
  });
  dialog.addEventListener("close", () => {
    $("viewer-image").removeAttribute("src");
    if (viewer.opener && viewer.opener.isConnected) viewer.opener.focus();
  });
  // a click on the backdrop closes, as on a phone one expects
  dialog.addEventListener("click", (e) => { if (e.target === dialog) viewer.close(); });
  const stage = $("viewer-stage");
  let from = null;
  stage.addEventListener("pointerdown", (e) => { from = { x: e.clientX, y: e.clientY }; });
  stage.addEventListener("pointerup", (e) => {
    if (!from) return;
    const dx = e.clientX - from.x;
    const dy = e.clientY - from.y;
    from = null;
    if (Math.abs(dx) > SWIPE_PX && Math.abs(dx) > Math.abs(dy)) viewer.step(dx < 0 ? 1 : -1);
  });
  stage.addEventListener("pointercancel", () => { from = null; });
}
