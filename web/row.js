// One video's row in the list, drawn from the API's video JSON. Fields the
// API may not give yet (details, frames, actions) leave their part out.

import { errorText, knowsError, t } from "./i18n.js";
import { bytes, clock, date, optionsText, percent } from "./format.js";
import { mountStrip } from "./frames.js";

export function running(video) {
  return video.status === "queued" || video.status === "processing" || video.status === "uploading";
}

export function displayName(video) {
  return video.name || video.filename;
}

function statusText(status) {
  switch (status) {
    case "uploading": return t("page.status.uploading");
    case "queued": return t("page.status.queued");
    case "processing": return t("page.status.processing");
    case "done": return t("page.status.done");
    case "failed": return t("page.status.failed");
    case "cancelled": return t("page.status.cancelled");
    default: return status;
  }
}

function detailText(video) {
  switch (video.status) {
    case "processing": return t("page.video.processing", { percent: percent(video.progress) });
    case "queued": return video.queue_position
      ? t("page.video.queued_at", { position: video.queue_position })
      : t("page.video.queued");
    case "done": return t("page.video.frames", { count: video.frames ?? 0 }) + ", " +
      (video.download_url ? t("page.video.zip", { size: bytes(video.zip_bytes) }) : t("page.video.gone"));
    case "failed": return "";
    default: return t("page.video.uploaded", { size: bytes(video.size_bytes) });
  }
}

// what the details list shows, in order, for what the API gave
function facts(video) {
  const media = video.media || {};
  const rows = [
    [t("page.video.fact_uploaded"), date(video.created_at)],
    [t("page.video.fact_duration"), media.duration_secs != null ? clock(media.duration_secs) : ""],
    [t("page.video.fact_resolution"), media.width && media.height ? `${media.width} × ${media.height}` : ""],
    [t("page.video.fact_codec"), media.codec || ""],
    [t("page.video.fact_options"), optionsText(video.options)],
    [t("page.video.fact_frames"), video.frames != null ? t("page.video.frames", { count: video.frames }) : ""],
    [t("page.video.fact_zip"), video.zip_bytes != null ? bytes(video.zip_bytes) : ""],
    [t("page.video.fact_finished"), date(video.finished_at)],
    [t("page.video.fact_expires"), date(video.expires_at)],
    [t("page.video.fact_file"), video.name && video.name !== video.filename ? video.filename : ""],
  ];
  return rows.filter(([, value]) => value);
}

/// Draws `video` into its row `item`; `nameOf(id)` names another video.
export function render(item, video, nameOf) {
  const name = displayName(video);
  item.dataset.id = video.id;
  item.dataset.status = video.status;
  item.querySelector(".name").textContent = name;
  const status = item.querySelector(".status");
  status.textContent = statusText(video.status);
  status.className = "status " + video.status;
  item.querySelector(".select").setAttribute("aria-label", t("page.list.select_one", { name }));

  const source = item.querySelector(".source");
  source.hidden = !video.source_id;
  if (video.source_id) {
    const from = nameOf(video.source_id);
    source.textContent = from ? t("page.video.from", { name: from }) : t("page.video.from_other");
  }

  const progress = item.querySelector(".progress");
  progress.hidden = !running(video);
  progress.value = video.progress || 0;
  progress.setAttribute("aria-label", t("page.video.progress_label", { name, percent: percent(video.progress) }));
  item.querySelector(".detail").textContent = detailText(video);

  // the reason in plain words, the raw text of the tools under "details"
  const failure = item.querySelector(".failure");
  failure.hidden = video.status !== "failed" && !video.error;
  const plain = knowsError(video.error_code);
  item.querySelector(".reason").textContent = plain
    ? errorText({ code: video.error_code, message: video.error })
    : video.error || t("page.video.no_reason");
  item.querySelector(".raw").hidden = !plain || !video.error;
  item.querySelector(".raw-text").textContent = plain ? video.error || "" : "";

  const list = item.querySelector(".facts");
  list.replaceChildren(...facts(video).flatMap(([term, value]) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    return [dt, dd];
  }));

  const download = item.querySelector(".download");
  download.hidden = !video.download_url;
  download.textContent = t("page.video.download");
  if (video.download_url) {
    download.href = video.download_url;
    download.setAttribute("aria-label", t("page.video.download_named", { name }));
  }
  // the actions the API offers for this video
  const finished = video.status === "done" || video.status === "failed";
  const acts = "source_id" in video;
  item.querySelector(".rename-open").hidden = !("name" in video);
  item.querySelector(".again-open").hidden = !(acts && finished);
  item.querySelector(".retry").hidden = !(acts && video.status === "failed");
  item.querySelector(".rename-open").setAttribute("aria-label", t("page.video.rename_named", { name }));
  item.querySelector(".again-open").setAttribute("aria-label", t("page.video.again_named", { name }));
  item.querySelector(".retry").setAttribute("aria-label", t("page.video.retry_named", { name }));
  const remove = item.querySelector(".remove");
  if (!remove.dataset.armed) {
    remove.textContent = running(video) ? t("page.video.cancel") : t("page.video.delete");
    remove.setAttribute("aria-label", running(video)
      ? t("page.video.cancel_named", { name })
      : t("page.video.delete_named", { name }));
  }
  mountStrip(item, video);
}
