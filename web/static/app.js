// imagecache page: vanilla JS modules, no build step, no external resources.
// Every list is paged on the server; the visible tab is refreshed by short polling.
import { $, API, POLL_MS, act, api, notice, onChange, resumeSession, showSignIn, signIn, signOut, state, updateAuthButtons } from "./core.js";
import { cleanupDryRun, loadFolders, reconcile } from "./folders.js";
import { loadJobs } from "./jobs.js";
import { fillCollectionFilter, loadCollections, loadEvents, openViewer } from "./collections.js";

// -- tabs and polling -----------------------------------------------------------------

function selectTab(name) {
  state.tab = name;
  for (const btn of document.querySelectorAll(".tabs button")) {
    btn.setAttribute("aria-selected", btn.dataset.tab === name ? "true" : "false");
  }
  for (const panel of document.querySelectorAll(".panel")) panel.hidden = panel.id !== `panel-${name}`;
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  refresh(true);
}

let refreshing = false;
async function refresh(full) {
  if (refreshing) return;
  refreshing = true;
  try {
    await loadHealth();
    if (state.tab === "folders") await loadFolders();
    else if (state.tab === "jobs") await loadJobs();
    else if (state.tab === "collections") await loadCollections(full);
    else if (state.tab === "events") { if (full) await loadEvents(); }
  } catch (err) {
    if (err.status !== 401) notice(err.message, true);
  } finally {
    refreshing = false;
  }
}

async function loadHealth() {
  const res = await fetch(API + "/health");
  const el = $("service-status");
  if (!res.ok) { el.textContent = "service unavailable"; el.className = "error"; return; }
  const hl = await res.json();
  el.className = "muted";
  el.textContent = `log ${hl.head}` + (hl.lag ? ` · projections ${hl.lag} behind` : " · up to date");
}

// -- wiring ----------------------------------------------------------------------------------

async function start() {
  onChange(() => refresh());
  for (const btn of document.querySelectorAll(".tabs button")) btn.addEventListener("click", () => selectTab(btn.dataset.tab));
  $("sign-in").addEventListener("click", showSignIn);
  $("sign-out").addEventListener("click", signOut);
  $("sign-in-cancel").addEventListener("click", () => $("sign-in-dialog").close());
  // Enter in the token field submits the form, as the Sign in button does.
  $("sign-in-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const err = $("sign-in-error");
    try {
      await signIn(new FormData(ev.target).get("token").trim());
      ev.target.reset(); // signed in: the token leaves the page
      err.hidden = true;
      $("sign-in-dialog").close();
      updateAuthButtons();
      await loadInfo();
      refresh(true);
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
    }
  });
  $("job-status").addEventListener("change", (ev) => { state.jobs.status = ev.target.value; state.jobs.offset = 0; loadJobs(); });
  $("job-collection").addEventListener("change", (ev) => { state.jobs.collection = ev.target.value; state.jobs.offset = 0; loadJobs(); });
  $("add-folder-open").addEventListener("click", () => { $("add-folder").hidden = false; });
  $("add-folder").querySelector("[data-close]").addEventListener("click", () => { $("add-folder").hidden = true; });
  $("add-folder").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const out = await act("cache folder added", "POST", "/cache/folders", {
      path: f.get("path"), capacity_bytes: Math.round(parseFloat(f.get("capacity") || "0") * 1e9),
      priority: parseInt(f.get("priority") || "0", 10),
    });
    if (out) { ev.target.reset(); ev.target.hidden = true; }
  });
  $("register").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = await act("registered", "POST", "/collections", { path: new FormData(ev.target).get("path") });
    if (out) {
      ev.target.reset();
      notice(`registered ${out.collections.length} collection(s), ${out.collections.reduce((n, c) => n + c.images, 0)} images`);
    }
  });
  $("cleanup-dry-run").addEventListener("click", cleanupDryRun);
  $("reconcile").addEventListener("click", reconcile);
  $("viewer-close").addEventListener("click", () => $("viewer").close());
  $("viewer-prev").addEventListener("click", () => openViewer(state.viewerIndex - 1));
  $("viewer-next").addEventListener("click", () => openViewer(state.viewerIndex + 1));
  document.addEventListener("keydown", (ev) => {
    if (!$("viewer").open) return;
    if (ev.key === "ArrowLeft") openViewer(state.viewerIndex - 1);
    if (ev.key === "ArrowRight") openViewer(state.viewerIndex + 1);
  });
  await resumeSession(); // after a reload the session cookie still holds; ask for its CSRF value
  updateAuthButtons();
  await loadInfo();
  const tab = location.hash.slice(1);
  selectTab(["folders", "jobs", "collections", "events"].includes(tab) ? tab : "folders");
  setInterval(() => { if (!document.hidden) refresh(false); }, POLL_MS);
}

async function loadInfo() {
  try {
    state.info = await api("GET", "/info");
    $("maintenance-actions").hidden = !state.info.maintenance;
    // Names for the jobs table and the collection filter (first page; more load on demand).
    const cols = await api("GET", "/collections?limit=1000");
    for (const c of cols.collections) state.collections.names[c.id] = c.name;
    fillCollectionFilter(cols.collections);
  } catch (err) {
    if (err.status !== 401) notice(err.message, true);
  }
}

document.addEventListener("DOMContentLoaded", start);
