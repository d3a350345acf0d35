// The cache folders tab: usage, markers, capacity and priority, cleanup and reconcile.
import { $, act, api, bytes, h, notice, when } from "./core.js";

// -- cache folders ---------------------------------------------------------------------

export async function loadFolders() {
  const data = await api("GET", "/cache/folders/statistics");
  const box = $("folders");
  box.replaceChildren(...data.folders.map(folderCard));
  if (!data.folders.length) box.append(h("div", { class: "empty card" }, "No cache folder yet: add one."));
}

function folderCard(f) {
  const pct = f.capacity_bytes ? Math.min(100, f.usage * 100) : 0;
  const level = f.full ? "full" : f.near_full ? "near" : "";
  return h("div", { class: "card folder", "data-folder": f.id },
    h("div", { class: "head" },
      h("div", { style: "flex:1" }, h("h3", {}, f.path), h("div", { class: "id muted" }, f.id)),
      f.removed ? h("span", { class: "badge" }, "removed") : null,
      f.full ? h("span", { class: "badge full" }, "full") : null,
      !f.full && f.near_full ? h("span", { class: "badge near" }, "near full") : null),
    h("div", { class: `bar ${level}`, title: `${pct.toFixed(1)} %` },
      h("div", { style: `width:${f.capacity_bytes ? pct : 0}%` })),
    h("div", { class: "usage" },
      h("span", {}, `${bytes(f.bytes)} used`),
      h("span", {}, f.capacity_bytes ? `${pct.toFixed(1)} % of ${bytes(f.capacity_bytes)}` : "no limit but the disk")),
    h("dl", { class: "stats" },
      h("dt", {}, "Files"), h("dd", {}, f.files.toLocaleString()),
      h("dt", {}, "Collections"), h("dd", {}, f.collections.toLocaleString()),
      h("dt", {}, "Priority"), h("dd", {}, f.priority),
      h("dt", {}, "Last generation"), h("dd", {}, when(f.last_generated_at)),
      h("dt", {}, "Last cleanup"), h("dd", {}, when(f.last_cleanup_at)),
      h("dt", {}, "Last reconcile"), h("dd", {}, when(f.last_reconciled_at))),
    f.removed ? null : h("div", { class: "actions" },
      h("button", { onclick: () => editFolder(f) }, "Capacity & priority"),
      h("button", { class: "danger", onclick: () => removeFolder(f) }, "Remove")));
}

async function editFolder(f) {
  const gb = prompt("Capacity in GB (0 = no limit but the disk)", (f.capacity_bytes / 1e9).toString());
  if (gb === null) return;
  const pr = prompt("Priority (higher is filled first)", String(f.priority));
  if (pr === null) return;
  const capacity = Math.round(parseFloat(gb) * 1e9);
  const priority = parseInt(pr, 10);
  if (!(capacity >= 0) || Number.isNaN(priority)) { notice("capacity and priority must be numbers", true); return; }
  await act("folder changed", "PATCH", `/cache/folders/${f.id}`, { capacity_bytes: capacity, priority });
}

async function removeFolder(f) {
  if (!confirm(`Remove the cache folder ${f.path}? It must hold no files.`)) return;
  await act("folder removed", "DELETE", `/cache/folders/${f.id}`);
}

function olderThan() { return Math.max(0, parseFloat($("cleanup-days").value || "7")); }

function reportTable(folders, columns) {
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map(([label]) => h("th", {}, label)))),
    h("tbody", {}, folders.map((f) => h("tr", {}, columns.map(([, get, cls]) => h("td", { class: cls || "" }, get(f)))))));
}

const CLEANUP_COLUMNS = [
  ["Folder", (f) => f.path],
  ["Files", (f) => f.files.toLocaleString(), "num"],
  ["Size", (f) => bytes(f.bytes), "num"],
  ["Reasons", (f) => Object.entries(f.by_reason || {}).map(([k, n]) => `${k} ${n}`).join(", ") || "–"],
  ["Stale, kept", (f) => (f.stale_kept || 0).toLocaleString(), "num"],
];

export async function cleanupDryRun() {
  const days = olderThan();
  const out = await act("cleanup dry run finished", "POST", "/cache/folders/cleanup", { dry_run: true, older_than_days: days });
  if (!out) return;
  const box = $("cleanup-result");
  box.hidden = false;
  const count = out.folders.reduce((n, f) => n + f.files, 0);
  box.replaceChildren(
    h("h2", {}, `Cleanup dry run: ${count.toLocaleString()} files older than ${days} days would be deleted`),
    reportTable(out.folders, CLEANUP_COLUMNS),
    out.hint ? h("p", { class: "muted" }, out.hint) : null,
    h("div", { class: "row", style: "margin-top:10px" },
      h("button", { class: "ghost", onclick: () => { box.hidden = true; } }, "Close"),
      count ? h("button", { class: "primary", id: "cleanup-execute", onclick: () => cleanupExecute(days, count) },
        `Delete ${count.toLocaleString()} files`) : null));
}

async function cleanupExecute(days, count) {
  if (!confirm(`Delete ${count} files that no current rendition needs?`)) return;
  const out = await act("cleanup finished", "POST", "/cache/folders/cleanup", { dry_run: false, older_than_days: days });
  if (!out) return;
  const done = out.folders.reduce((n, f) => n + f.files, 0);
  $("cleanup-result").replaceChildren(h("h2", {}, `Cleanup done: ${done.toLocaleString()} files deleted`),
    reportTable(out.folders, CLEANUP_COLUMNS),
    h("div", { class: "row" }, h("button", { class: "ghost", onclick: () => { $("cleanup-result").hidden = true; } }, "Close")));
}

export async function reconcile() {
  const out = await act("reconcile finished", "POST", "/cache/folders/reconcile");
  if (!out) return;
  const box = $("cleanup-result");
  box.hidden = false;
  box.replaceChildren(h("h2", {}, "Reconcile: disk measured against the statistics"),
    reportTable(out.folders, [
      ["Folder", (f) => f.path],
      ["Files on disk", (f) => f.measured_files.toLocaleString(), "num"],
      ["Files projected", (f) => f.projected_files.toLocaleString(), "num"],
      ["Bytes on disk", (f) => bytes(f.measured_bytes), "num"],
      ["Drift", (f) => (f.drift ? "corrected" : "none")],
    ]),
    h("div", { class: "row", style: "margin-top:10px" }, h("button", { class: "ghost", onclick: () => { box.hidden = true; } }, "Close")));
}

