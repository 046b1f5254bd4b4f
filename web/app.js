// The Video Project's page. It speaks the public API (/api/v1) like any
// client; each module owns one part of the page:
//   i18n, format   the words, numbers and dates in the reader's language
//   api            the session and JSON calls
//   auth           signing up, in and out, and the links we email
//   account        the account panel
//   upload         several files at once, a few at a time
//   videos, row    the list and one video's row; actions: what a row does
//   frames         the thumbnails strip and the viewer
//   live           the event stream that keeps the list current

import { $ } from "./dom.js";
import { api } from "./api.js";
import { browserLocale, currentLocale, onLocaleChange, useLocale } from "./i18n.js";
import { onWorkspace, retranslateAuth, showVerifyBanner, startAuth } from "./auth.js";
import { closeAccount, profile, saveLocale, showProfile, startAccount } from "./account.js";
import { onUploaded, retranslateUploads, startUploads, stopAll } from "./upload.js";
import { startList, videos } from "./videos.js";
import { live } from "./live.js";
import { startViewer, viewer } from "./frames.js";

let running = false;

// the profile, once any verification link being opened has been
async function checkProfile(verifying) {
  await verifying;
  try {
    const me = await api("GET", "/me");
    showProfile(me);
    showVerifyBanner(!me.email_verified, me.email);
    if (me.locale && me.locale !== currentLocale()) await useLocale(me.locale);
  } catch (_) { /* asked again at the next start */ }
}

function start(verifying) {
  running = true;
  videos.reload();
  live.start();
  checkProfile(verifying);
}

function stop() {
  running = false;
  live.stop();
  stopAll();
  videos.clear();
  viewer.close();
  closeAccount();
}

async function main() {
  live.onVideo = (video) => videos.upsert(video);
  live.onReconnect = () => videos.reload();
  onUploaded((video) => videos.upsert(video), () => videos.reload());
  onWorkspace(start, stop, checkProfile);
  onLocaleChange((locale) => {
    $("language").value = locale;
    retranslateAuth();
    retranslateUploads();
    videos.renderAll();
    if (running) live.status();
    if (profile() && profile().email_verified === false) showVerifyBanner(true, profile().email);
  });
  $("language").addEventListener("change", async (e) => {
    const locale = e.currentTarget.value;
    await useLocale(locale);
    if (running) await saveLocale(locale);
  });

  startList();
  startUploads();
  startAccount();
  startViewer();
  await useLocale(browserLocale());
  $("language").value = currentLocale();
  startAuth(currentLocale);
}

main();
