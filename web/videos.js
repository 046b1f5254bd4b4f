// The list of the user's videos: filtered by status and name, newest or
// oldest first, paged on demand, kept live by the event stream; several
// can be selected to download as one zip or to delete.

import { $, announce, fromTemplate } from "./dom.js";
import { api } from "./api.js";
import { errorText, t } from "./i18n.js";
import { displayName, render } from "./row.js";
import { wireRow } from "./actions.js";

const PAGE = 50;
const SEARCH_PAUSE_MS = 250;
const CONFIRM_MS = 4000;

export const videos = {
  byId: new Map(),
  items: new Map(), // id -> <li>
  names: new Map(), // id -> name, of every video seen (for "made from …")
  selected: new Set(),
  cursor: null,
  // whether the API filters (until it does, the page filters what it has)
  serverFilters: true,
  generation: 0,

  filters() {
    const status = $("filter-status").value;
    return {
      status: status ? status.split(",") : null,
      q: $("filter-q").value.trim(),
      order: $("filter-order").value,
    };
  },

  query(cursor) {
    const f = this.filters();
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (this.serverFilters) {
      if (f.status) params.set("status", f.status.join(","));
      if (f.q) params.set("q", f.q);
      if (f.order !== "newest") params.set("order", f.order);
    }
    if (cursor) params.set("cursor", cursor);
    return "/videos?" + params;
  },

  matches(video) {
    const f = this.filters();
    if (f.status && !f.status.includes(video.status)) return false;
    return !f.q || displayName(video).toLowerCase().includes(f.q.toLowerCase());
  },

  clear() {
    this.byId.clear();
    this.items.clear();
    this.selected.clear();
    this.cursor = null;
    $("videos").replaceChildren();
    this.showSelection();
  },

  async fetchPage(cursor) {
    try {
      return await api("GET", this.query(cursor));
    } catch (e) {
      // an API without the filters yet refuses their parameters
      if (e.code !== "invalid_input" || !this.serverFilters || !this.query(cursor).match(/status=|q=|order=/)) throw e;
      this.serverFilters = false;
      return api("GET", this.query(cursor));
    }
  },

  async reload() {
    const generation = ++this.generation;
    try {
      const page = await this.fetchPage(null);
      if (generation !== this.generation) return; // a newer filter won
      const seen = new Set(page.videos.map((v) => v.id));
      // videos deleted elsewhere (or filtered out) leave the list
      for (const id of [...this.byId.keys()]) {
        if (!seen.has(id) && this.isWithinPage(id, page)) this.remove(id);
      }
      page.videos.forEach((v) => this.upsert(v));
      if (this.cursor === null || this.byId.size <= page.videos.length) this.cursor = page.next_cursor;
      this.showEmpty();
    } catch (e) {
      $("live").textContent = errorText(e);
    }
  },

  /// A fresh list for new filters.
  refilter() {
    this.clear();
    return this.reload();
  },

  isWithinPage(id, page) {
    const last = page.videos[page.videos.length - 1];
    if (!page.next_cursor || !last) return true;
    const mine = this.byId.get(id).created_at;
    return this.filters().order === "oldest" ? mine <= last.created_at : mine >= last.created_at;
  },

  async more() {
    if (!this.cursor) return;
    const page = await this.fetchPage(this.cursor);
    page.videos.forEach((v) => this.upsert(v));
    this.cursor = page.next_cursor;
    this.showEmpty();
  },

  showEmpty() {
    const empty = $("videos-empty");
    empty.hidden = this.byId.size > 0;
    const f = this.filters();
    empty.textContent = f.status || f.q ? t("page.list.no_match") : t("page.list.empty");
    $("more").hidden = !this.cursor;
  },

  get(id) {
    return this.byId.get(id);
  },

  item(id) {
    return this.items.get(id);
  },

  upsert(video) {
    this.names.set(video.id, displayName(video));
    const known = this.byId.get(video.id);
    // events can arrive after a fresher answer: keep the newest
    if (known && known.updated_at > video.updated_at) return;
    if (!this.matches(video)) {
      if (known) this.remove(video.id);
      return;
    }
    if (known && known.status !== video.status) this.changed(known, video);
    video.linked_at = Date.now();
    this.byId.set(video.id, video);
    let item = this.items.get(video.id);
    if (!item) {
      item = fromTemplate("video-template");
      wireRow(item, video.id, this);
      item.querySelector(".select").addEventListener("change", (e) => this.select(video.id, e.currentTarget.checked));
      this.items.set(video.id, item);
      this.place(item, video);
    }
    this.render(video.id);
    this.showEmpty();
  },

  render(id) {
    render(this.items.get(id), this.byId.get(id), (other) => this.names.get(other));
  },

  /// Every row again, after a change of language.
  renderAll() {
    for (const id of this.items.keys()) this.render(id);
    this.showEmpty();
    this.showSelection();
  },

  // newest first, or oldest first, as the filter says
  place(item, video) {
    const oldest = this.filters().order === "oldest";
    const list = $("videos");
    for (const other of list.children) {
      const v = this.byId.get(other.dataset.id);
      if (v && (oldest ? v.created_at > video.created_at : v.created_at < video.created_at)) {
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
    this.selected.delete(id);
    this.showEmpty();
    this.showSelection();
  },

  changed(before, video) {
    const name = displayName(video);
    if (video.status === "done") announce(t("page.video.done_announce", { name, count: video.frames ?? 0 }));
    else if (video.status === "failed") announce(t("page.video.failed_announce", { name }));
    // a video leaving the queue moves the others up: their places are asked again
    if (before.status === "queued" && [...this.byId.values()].some((v) => v.status === "queued" && v.id !== video.id)) {
      clearTimeout(this.requeue);
      this.requeue = setTimeout(() => this.reload(), 1000);
    }
  },

  // ---- selecting several ----

  select(id, on) {
    if (on) this.selected.add(id);
    else this.selected.delete(id);
    this.showSelection();
  },

  selectAll(on) {
    for (const [id, item] of this.items) {
      item.querySelector(".select").checked = on;
      if (on) this.selected.add(id);
      else this.selected.delete(id);
    }
    this.showSelection();
  },

  showSelection() {
    const n = this.selected.size;
    $("selected-count").textContent = n ? t("page.list.selected", { count: n }) : "";
    const done = [...this.selected].filter((id) => this.byId.get(id)?.status === "done").length;
    $("bulk-download").disabled = done === 0;
    $("bulk-delete").disabled = n === 0;
    const all = $("select-all");
    all.checked = n > 0 && n === this.items.size;
    all.indeterminate = n > 0 && n < this.items.size;
    if (!$("bulk-delete").dataset.armed) $("bulk-delete").textContent = t("page.list.delete_selected");
  },

  async downloadSelected() {
    const ids = [...this.selected].filter((id) => this.byId.get(id)?.status === "done");
    try {
      const answer = await api("POST", "/videos/archive", { ids });
      const link = document.createElement("a");
      link.href = answer.url;
      link.download = "";
      document.body.appendChild(link);
      link.click();
      link.remove();
    } catch (e) {
      $("live").textContent = errorText(e);
    }
  },

  async deleteSelected(button) {
    if (!button.dataset.armed) {
      button.dataset.armed = "1";
      button.textContent = t("page.list.confirm_delete", { count: this.selected.size });
      setTimeout(() => { delete button.dataset.armed; this.showSelection(); }, CONFIRM_MS);
      return;
    }
    delete button.dataset.armed;
    try {
      const answer = await api("POST", "/videos/delete", { ids: [...this.selected] });
      for (const id of answer.deleted) this.remove(id);
      announce(t("page.list.deleted", { count: answer.deleted.length }));
    } catch (e) {
      $("live").textContent = errorText(e);
    }
    this.showSelection();
  },
};

export function startList() {
  $("more").addEventListener("click", () => videos.more().catch((e) => ($("live").textContent = errorText(e))));
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("filter-status").addEventListener("change", () => videos.refilter());
  $("filter-order").addEventListener("change", () => videos.refilter());
  let pause = null;
  $("filter-q").addEventListener("input", () => {
    clearTimeout(pause);
    pause = setTimeout(() => videos.refilter(), SEARCH_PAUSE_MS);
  });
  $("select-all").addEventListener("change", (e) => videos.selectAll(e.currentTarget.checked));
  $("bulk-download").addEventListener("click", () => videos.downloadSelected());
  $("bulk-delete").addEventListener("click", (e) => videos.deleteSelected(e.currentTarget));
}
