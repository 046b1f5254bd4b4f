// What a person does to one video from its row: download, rename,
// process again with other options, retry a failed one, delete or cancel.

import { announce, linkLabels } from "./dom.js";
import { api, videoPath } from "./api.js";
import { errorText, t, translate } from "./i18n.js";
import { readOptions, syncMode, whyRefused } from "./upload.js";
import { displayName, running } from "./row.js";

// a download link is good for 15 minutes; older ones are refreshed first
const LINK_FRESH_MS = 10 * 60 * 1000;
const CONFIRM_MS = 4000;

/// The frame options a video was made with, as the API takes them.
function sameOptions(options) {
  const fields = {};
  for (const name of ["interval", "count", "format", "width", "max_frames"]) {
    if (options && options[name] != null) fields[name] = options[name];
  }
  return fields;
}

// the form's fields as JSON numbers where they are numbers
function asJson(fields) {
  const out = {};
  for (const [name, value] of Object.entries(fields)) {
    out[name] = name === "format" ? value : Number(value);
  }
  return out;
}

/// Wires the row `item` of video `id`; `list` is the list it lives in
/// (get, upsert, remove, render).
export function wireRow(item, id, list) {
  const say = (text) => { item.querySelector(".row-error").textContent = text; };
  linkLabels(item, "v-" + id);
  const again = item.querySelector(".again");
  for (const radio of again.querySelectorAll("[type=radio]")) {
    radio.name = "mode-" + id;
    radio.addEventListener("change", () => syncMode(again));
  }
  syncMode(again);

  item.querySelector(".download").addEventListener("click", (e) => download(e, id, list, say));
  item.querySelector(".remove").addEventListener("click", (e) => remove(e.currentTarget, id, list, say));

  const rename = item.querySelector(".rename");
  const input = item.querySelector(".rename-input");
  item.querySelector(".rename-open").addEventListener("click", () => {
    rename.hidden = false;
    input.value = displayName(list.get(id));
    input.focus();
    input.select();
  });
  const closeRename = () => {
    rename.hidden = true;
    item.querySelector(".rename-open").focus();
  };
  item.querySelector(".rename-cancel").addEventListener("click", closeRename);
  rename.addEventListener("keydown", (e) => { if (e.key === "Escape") { e.preventDefault(); closeRename(); } });
  rename.addEventListener("submit", async (e) => {
    e.preventDefault();
    say("");
    const name = input.value.trim();
    if (!name) return say(t("page.video.name_empty"));
    try {
      const answer = await api("PATCH", videoPath(id), { name });
      list.upsert(answer.video);
      closeRename();
      announce(t("page.video.renamed", { name }));
    } catch (e) {
      say(errorText(e));
    }
  });

  item.querySelector(".again-open").addEventListener("click", () => {
    fillOptions(again, list.get(id).options);
    again.hidden = false;
    again.querySelector("input:not(:disabled)").focus();
  });
  item.querySelector(".again-cancel").addEventListener("click", () => {
    again.hidden = true;
    item.querySelector(".again-open").focus();
  });
  again.addEventListener("submit", async (e) => {
    e.preventDefault();
    again.querySelector(".again-error").textContent = "";
    try {
      await reprocess(id, asJson(readOptions(again)), list);
      again.hidden = true;
    } catch (e) {
      again.querySelector(".again-error").textContent = whyRefused(e);
    }
  });
  item.querySelector(".retry").addEventListener("click", async (e) => {
    const button = e.currentTarget;
    button.disabled = true;
    say("");
    try {
      await reprocess(id, sameOptions(list.get(id).options), list);
    } catch (error) {
      say(whyRefused(error));
    } finally {
      button.disabled = false;
    }
  });
  translate(item);
}

async function reprocess(id, options, list) {
  const answer = await api("POST", videoPath(id, "/reprocess"), options);
  list.upsert(answer.video);
  announce(t("page.video.again_started", { name: displayName(list.get(id)) }));
}

/// Puts a video's options into a "process again" form.
function fillOptions(form, options) {
  if (!options) return;
  const counting = options.count != null;
  form.querySelector("[value=count]").checked = counting;
  form.querySelector("[value=interval]").checked = !counting;
  if (counting) form.querySelector("[name=count]").value = options.count;
  if (options.interval != null) form.querySelector("[name=interval]").value = options.interval;
  if (options.format) form.querySelector("[name=format]").value = options.format;
  form.querySelector("[name=width]").value = options.width ?? "";
  syncMode(form);
}

async function download(event, id, list, say) {
  const video = list.get(id);
  if (Date.now() - video.linked_at < LINK_FRESH_MS) return; // the link is fresh: follow it
  event.preventDefault();
  try {
    const fresh = await api("GET", videoPath(id));
    list.upsert(fresh.video);
    if (fresh.video.download_url) {
      const link = list.item(id).querySelector(".download");
      link.href = fresh.video.download_url;
      link.click();
    }
  } catch (e) {
    say(errorText(e));
  }
}

async function remove(button, id, list, say) {
  const video = list.get(id);
  // a second press within a few seconds confirms
  if (!button.dataset.armed) {
    button.dataset.armed = "1";
    button.textContent = running(video) ? t("page.video.confirm_cancel") : t("page.video.confirm_delete");
    setTimeout(() => {
      delete button.dataset.armed;
      if (list.get(id)) list.render(id);
    }, CONFIRM_MS);
    return;
  }
  button.disabled = true;
  try {
    await api("DELETE", videoPath(id));
    list.remove(id);
    announce(t("page.video.deleted", { name: displayName(video) }));
  } catch (e) {
    if (e.status === 404) list.remove(id);
    else { button.disabled = false; say(errorText(e)); }
  }
}
