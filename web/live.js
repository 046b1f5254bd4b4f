// Live changes: one server-sent event stream for every change to the
// user's videos. EventSource cannot send the Authorization header, so the
// stream is read with fetch and parsed here.

import { $ } from "./dom.js";
import { API, session, sessionEnded } from "./api.js";
import { t } from "./i18n.js";

const RETRY_MAX_MS = 15000;

export const live = {
  controller: null,
  retry: 1000,
  connected: false,
  onVideo: () => {},
  onReconnect: async () => {},

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

  status() {
    $("live").textContent = this.connected ? t("page.live.on") : t("page.live.reconnecting");
  },

  async run(controller) {
    while (!controller.signal.aborted && session.current) {
      try {
        const response = await fetch(API + "/events", {
          headers: { ...session.header(), Accept: "text/event-stream" },
          signal: controller.signal,
        });
        if (response.status === 401) return sessionEnded();
        if (!response.ok || !response.body) throw new Error("stream refused: " + response.status);
        this.retry = 1000;
        this.connected = true;
        this.status();
        await readEvents(response.body, (type, data) => {
          if (type === "video") this.onVideo(JSON.parse(data).video);
        });
      } catch (_) {
        if (controller.signal.aborted) return;
      }
      this.connected = false;
      this.status();
      await new Promise((r) => setTimeout(r, this.retry));
      this.retry = Math.min(this.retry * 2, RETRY_MAX_MS);
      // changes made while away come with a fresh list
      if (!controller.signal.aborted && session.current) await this.onReconnect();
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
