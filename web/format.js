// Numbers, sizes, dates and durations for people, in the page's language.

import { currentLocale, t } from "./i18n.js";

export function number(n, digits = 2) {
  return new Intl.NumberFormat(currentLocale(), { maximumFractionDigits: digits }).format(n);
}

const UNITS = ["kilobyte", "megabyte", "gigabyte", "terabyte"];

/// 18 bytes, 1.2 MB (decimal units, as disks and networks count).
export function bytes(n) {
  if (n == null) return "";
  if (n < 1000) return t("page.size.bytes", { count: n });
  let value = n / 1000;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  return new Intl.NumberFormat(currentLocale(), {
    style: "unit",
    unit: UNITS[unit],
    maximumFractionDigits: value < 10 ? 1 : 0,
  }).format(value);
}

export function percent(p) {
  return new Intl.NumberFormat(currentLocale(), { style: "percent", maximumFractionDigits: 0 })
    .format(Math.floor((p || 0) * 100) / 100);
}

export function date(iso) {
  if (!iso) return "";
  return new Intl.DateTimeFormat(currentLocale(), { dateStyle: "medium", timeStyle: "short" })
    .format(new Date(iso));
}

/// A length of time as a clock shows it: 0:08, 1:02:03.
export function clock(secs) {
  const whole = Math.max(0, Math.round(secs || 0));
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/// A frame's time in the video, to the hundredth: 0:02.50.
export function timestamp(secs) {
  const whole = Math.floor(secs || 0);
  const hundredths = String(Math.round(((secs || 0) - whole) * 100) % 100).padStart(2, "0");
  const sep = new Intl.NumberFormat(currentLocale()).format(1.5).charAt(1);
  return `${clock(whole)}${sep}${hundredths}`;
}

/// The frame options in words: "1 frame every 2.5 s, PNG, 640 px wide".
export function optionsText(options) {
  if (!options) return "";
  const parts = [];
  if (options.count != null) parts.push(t("page.options.words_count", { count: options.count }));
  else if (options.interval != null) parts.push(t("page.options.words_interval", { seconds: options.interval }));
  if (options.format) parts.push(options.format === "png" ? "PNG" : "JPEG");
  if (options.width != null) parts.push(t("page.options.words_width", { width: options.width }));
  else parts.push(t("page.options.words_native"));
  return parts.join(", ");
}
