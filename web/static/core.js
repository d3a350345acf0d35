// Shared state, DOM and formatting helpers, the API client with the session, paging.
export const API = "/api/v1";
export const POLL_MS = 1500;
export const state = {
  tab: "folders",
  info: null,
  jobs: { offset: 0, limit: 50, status: "", collection: "", selected: null, failClass: "", failOffset: 0 },
  collections: { offset: 0, limit: 100, selected: null, names: {} },
  gallery: { offset: 0, limit: 120, images: [] },
  events: { after: null, limit: 100 },
  viewerIndex: -1,
  cleanup: null,
};

// -- small helpers -------------------------------------------------------------------

export const $ = (id) => document.getElementById(id);

// Build an element; children may be strings (set as text, never as HTML) or nodes.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    // Through the CSSOM: the CSP allows no inline style attribute, but governs not this.
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KB", "MB", "GB", "TB", "PB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(n < 10 && i ? 1 : 0)} ${units[i]}`;
}

export function when(iso) {
  if (!iso) return "never";
  const d = new Date(iso);
  const secs = (Date.now() - d.getTime()) / 1000;
  if (secs < 60) return "just now";
  if (secs < 3600) return `${Math.round(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.round(secs / 3600)} h ago`;
  return d.toLocaleString();
}

export function duration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function basename(p) { return (p || "").split("/").pop(); }

export function notice(text, isError) {
  const el = $("notice");
  el.hidden = !text;
  el.textContent = text || "";
  el.classList.toggle("error", !!isError);
  if (text && !isError) setTimeout(() => { if (el.textContent === text) el.hidden = true; }, 6000);
}

// -- the API, with the token ------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// The session's anti-CSRF value, in memory only: every change sends it, and a reload
// asks the server for it again (GET /session, which the session cookie answers). The API
// token itself is never kept: it is sent once, to sign in.
let csrf = null;
export function signedIn() { return csrf !== null; }

export async function api(method, path, body) {
  const headers = {};
  if (csrf && method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(API + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const type = res.headers.get("content-type") || "";
  const data = type.includes("json") ? await res.json() : null;
  if (res.status === 401) {
    csrf = null; // the session ended (expired, or signed out elsewhere)
    updateAuthButtons();
    showSignIn();
    throw new ApiError(401, data || {});
  }
  if (!res.ok) throw new ApiError(res.status, data || {});
  return data;
}

// Set by app.js: refreshes the visible tab after a change.
let refresher = () => {};
export function onChange(fn) { refresher = fn; }

// A changing request from a button: report the outcome, refresh what is visible.
export async function act(label, method, path, body) {
  try {
    const out = await api(method, path, body);
    notice(label);
    refresher();
    return out;
  } catch (err) {
    if (err.status !== 401) notice(err.message, true);
    return null;
  }
}

export function showSignIn() {
  const dlg = $("sign-in-dialog");
  if (!dlg.open) dlg.showModal();
}

// Recover the session after a reload: true when the session cookie is still signed in.
export async function resumeSession() {
  try {
    const res = await fetch(API + "/session", { credentials: "same-origin" });
    const data = res.ok ? await res.json() : { signed_in: false };
    csrf = data.signed_in ? data.csrf : null;
  } catch (_) {
    csrf = null;
  }
  return signedIn();
}

// Sign in with the token the user typed: the server answers with an HttpOnly session
// cookie and the session's anti-CSRF value. The token is not kept anywhere.
export async function signIn(token) {
  const res = await fetch(API + "/session", {
    method: "POST", headers: { Authorization: `Bearer ${token}` }, credentials: "same-origin",
  });
  if (!res.ok) throw new Error("that token was not accepted");
  csrf = (await res.json()).csrf;
}

export async function signOut() {
  try { await api("DELETE", "/session"); } catch (_) { /* signed out either way */ }
  csrf = null;
  location.reload();
}

export function updateAuthButtons() {
  $("sign-in").hidden = signedIn();
  $("sign-out").hidden = !signedIn();
}

// -- paging -------------------------------------------------------------------------------

export function pager(box, total, page, reload, compact) {
  const last = page.offset + page.limit >= total;
  box.replaceChildren(
    h("span", {}, total ? `${(page.offset + 1).toLocaleString()}–${Math.min(page.offset + page.limit, total).toLocaleString()} of ${total.toLocaleString()}` : ""),
    h("button", { disabled: page.offset === 0, onclick: () => { page.offset = 0; reload(); } }, "«"),
    h("button", { disabled: page.offset === 0, onclick: () => { page.offset = Math.max(0, page.offset - page.limit); reload(); } }, compact ? "‹" : "‹ Previous"),
    h("button", { disabled: last, onclick: () => { page.offset += page.limit; reload(); } }, compact ? "›" : "Next ›"),
    h("button", { disabled: last, onclick: () => { page.offset = Math.max(0, Math.floor((total - 1) / page.limit) * page.limit); reload(); } }, "»"));
}


export function collectionName(id) { return state.collections.names[id] || (id || "").slice(0, 10); }
