// The public API (/api/v1) as the page speaks it: the session token kept
// in this browser, JSON in and out, typed errors.

import { t } from "./i18n.js";

export const API = "/api/v1";
export const SESSION_KEY = "videoproject.session";

export class ApiError extends Error {
  constructor(status, body, retryAfter = null) {
    const error = (body && body.error) || {};
    super(error.message || t("page.error.status", { status }));
    this.status = status;
    this.code = error.code || "http_" + status;
    this.field = error.field || null;
    // seconds, from Retry-After on a 429 or 503
    this.retryAfter = retryAfter;
  }
}

export const session = {
  current: null, // {token, expires_at, email}
  load() {
    try {
      const s = JSON.parse(localStorage.getItem(SESSION_KEY));
      if (s && s.token && Date.parse(s.expires_at) > Date.now()) return s;
    } catch (_) { /* unreadable: signed out */ }
    return null;
  },
  save(s) {
    this.current = s;
    localStorage.setItem(SESSION_KEY, JSON.stringify(s));
  },
  clear() {
    this.current = null;
    localStorage.removeItem(SESSION_KEY);
  },
  header() {
    return this.current ? { Authorization: "Bearer " + this.current.token } : {};
  },
};

// what runs when the API says the session is over (auth.js sets it)
let onExpired = () => {};
export function whenSessionEnds(handler) {
  onExpired = handler;
}
export function sessionEnded() {
  onExpired();
}

export function retryAfter(headerValue) {
  const n = Number(headerValue);
  return Number.isFinite(n) && n > 0 ? n : null;
}

// a busy node answers 503 with Retry-After: reads and deletes (which are
// safe to repeat) wait and try again a few times before giving up
const BUSY_RETRIES = 3;

export async function api(method, path, body, attempt = 0) {
  const headers = { Accept: "application/json", ...session.header() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path.startsWith("/") && !path.startsWith(API) ? API + path : path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (_) {
    throw new ApiError(0, { error: { code: "offline", message: t("page.error.offline") } });
  }
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  const wait = retryAfter(response.headers.get("Retry-After"));
  if (response.status === 503 && (method === "GET" || method === "DELETE") &&
      attempt < BUSY_RETRIES && wait && wait <= 10) {
    await new Promise((r) => setTimeout(r, wait * 1000));
    return api(method, path, body, attempt + 1);
  }
  if (!response.ok) {
    const error = new ApiError(response.status, json, wait);
    if (response.status === 401 && session.current && path !== "/me/password") sessionEnded();
    throw error;
  }
  return json;
}

/// `/api/v1/videos/<id><rest>`.
export function videoPath(id, rest = "") {
  return "/videos/" + encodeURIComponent(id) + rest;
}
