// The page's words in the reader's language. Strings come from
// /assets/locales/<locale>.json (one flat object, dotted keys). Every call
// of t names its key as a string literal (page.<area>.<what>), so a test
// can check each exists. Plurals are `<key>.one` / `<key>.other`.

export const LOCALES = ["en", "pt-BR"];
const CHOSEN_KEY = "videoproject.locale";

let locale = "en";
let strings = {};
const listeners = [];

export function currentLocale() {
  return locale;
}

/// The supported locale closest to `tags` (say navigator.languages).
export function closest(tags) {
  for (const tag of tags || []) {
    const lower = String(tag).toLowerCase();
    if (lower.startsWith("pt")) return "pt-BR";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

/// What this browser last chose, or what its languages say.
export function browserLocale() {
  const chosen = localStorage.getItem(CHOSEN_KEY);
  return LOCALES.includes(chosen) ? chosen : closest(navigator.languages);
}

/// Loads `wanted`'s strings and redraws the page's fixed texts in it.
export async function useLocale(wanted) {
  const next = LOCALES.includes(wanted) ? wanted : "en";
  if (next === locale && Object.keys(strings).length) return;
  try {
    const response = await fetch(`/assets/locales/${next}.json`);
    if (!response.ok) throw new Error(String(response.status));
    strings = await response.json();
    locale = next;
  } catch (_) {
    // without the file the page keeps the words it has (English in the HTML)
    if (!Object.keys(strings).length) return;
  }
  localStorage.setItem(CHOSEN_KEY, locale);
  document.documentElement.lang = locale;
  translate(document);
  for (const listener of listeners) listener(locale);
}

/// Runs `listener(locale)` after each change of language.
export function onLocaleChange(listener) {
  listeners.push(listener);
}

function fill(text, params) {
  return text.replace(/\{(\w+)\}/g, (all, name) => {
    if (!params || !(name in params)) return all;
    const value = params[name];
    return typeof value === "number" ? new Intl.NumberFormat(locale).format(value) : String(value);
  });
}

function lookup(key, params) {
  let text = strings[key];
  if (text === undefined && params && typeof params.count === "number") {
    const form = new Intl.PluralRules(locale).select(params.count);
    text = strings[`${key}.${form}`] ?? strings[`${key}.other`];
  }
  return text === undefined ? null : fill(text, params);
}

/// The text of `key` in the current language, `{name}` filled from `params`.
export function t(key, params) {
  return lookup(key, params) ?? key;
}

/// A plain message for an API error: `error.<code>` when we have it, else
/// the API's own message.
export function errorText(error) {
  if (!error) return "";
  return (error.code && lookup("error." + error.code, error)) || error.message || error.code || "";
}

/// Whether `error.<code>` has a message of its own.
export function knowsError(code) {
  return Boolean(code) && strings["error." + code] !== undefined;
}

/// Puts the fixed texts of `root` in the current language: `data-i18n`
/// for the text, `data-i18n-placeholder` and `data-i18n-label` (the
/// accessible name) for attributes.
export function translate(root) {
  if (!Object.keys(strings).length) return;
  for (const el of root.querySelectorAll("[data-i18n]")) {
    const text = lookup(el.dataset.i18n);
    if (text !== null) el.textContent = text;
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    const text = lookup(el.dataset.i18nPlaceholder);
    if (text !== null) el.placeholder = text;
  }
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    const text = lookup(el.dataset.i18nLabel);
    if (text !== null) el.setAttribute("aria-label", text);
  }
}
