// The collections tab (list, gallery, viewer, regenerate) and the event log tab.
import { $, API, act, api, basename, h, notice, pager, state, when } from "./core.js";

// -- collections and the gallery --------------------------------------------------------------

export async function loadCollections(full) {
  const c = state.collections;
  const data = await api("GET", `/collections?offset=${c.offset}&limit=${c.limit}`);
  for (const col of data.collections) c.names[col.id] = col.name;
  fillCollectionFilter(data.collections);
  const list = $("collections");
  list.replaceChildren(...data.collections.map((col) => h("li", {
      class: c.selected === col.id ? "selected" : "", "data-collection": col.id,
      onclick: () => { c.selected = col.id; state.gallery.offset = 0; loadCollections(true); },
    },
    h("span", { class: "name", title: col.path }, col.name),
    h("span", { class: "count" }, col.images.toLocaleString()))));
  if (!data.collections.length) list.append(h("li", { class: "muted" }, "No collections yet."));
  pager($("collections-pager"), data.total, c, () => loadCollections(true), true);
  if (!c.selected && data.collections.length) { c.selected = data.collections[0].id; full = true; }
  if (c.selected) await loadCollectionHead();
  if (c.selected && full) await loadGallery();
}

export function fillCollectionFilter(cols) {
  const sel = $("job-collection");
  const have = new Set([...sel.options].map((o) => o.value));
  for (const col of cols) if (!have.has(col.id)) sel.append(h("option", { value: col.id }, col.name));
}

async function loadCollectionHead() {
  let col;
  try {
    col = await api("GET", `/collections/${state.collections.selected}`);
  } catch (err) {
    // Removed meanwhile (a poll that listed it may finish after the removal): pick anew.
    if (err.status === 404) { state.collections.selected = null; return; }
    throw err;
  }
  const r = col.renditions || {};
  $("collection-head").replaceChildren(
    h("div", {},
      h("h1", {}, col.name),
      h("div", { class: "muted" }, `${col.images.toLocaleString()} images · ${(r.thumbnail || 0).toLocaleString()} thumbnails · ${(r.cache || 0).toLocaleString()} cache images · ${col.jobs} jobs · scanned ${when(col.last_scan_at)}`)),
    h("div", { class: "spacer" }),
    h("button", { onclick: () => act("scan finished", "POST", `/collections/${col.id}/scan`) }, "Scan"),
    h("button", { class: "primary", "data-action": "regenerate", onclick: () => regenerate(col, false) }, "Regenerate missing"),
    h("button", { onclick: () => regenerate(col, true) }, "Force regenerate"),
    h("button", { "data-action": "remove", onclick: () => removeCollection(col) }, "Remove"));
}

async function removeCollection(col) {
  if (!confirm(`Stop caching ${col.name}? Its unfinished jobs are cancelled and cleanup deletes its cache files; adding its path again brings it back.`)) return;
  const out = await act(`removed ${col.name}`, "DELETE", `/collections/${col.id}`);
  if (!out) return;
  state.collections.selected = null;
  await loadCollections(true).catch((err) => { if (err.status !== 401) notice(err.message, true); });
}

async function regenerate(col, force) {
  if (force && !confirm(`Regenerate every rendition of ${col.name}, even current ones?`)) return;
  const out = await api("POST", "/regenerate", { collections: [col.id], force, kind: "both" }).catch((err) => {
    if (err.status !== 401) notice(err.message, true);
    return null;
  });
  if (!out) return;
  const parts = [];
  if (out.jobs.length) {
    parts.push(`planned ${out.jobs.length} job(s): ${out.jobs.reduce((n, j) => n + j.to_process, 0)} images to process`);
  }
  if (out.queued) parts.push(`${out.queued} images already queued in an unfinished job`);
  if (out.quarantined) parts.push(`${out.quarantined} held back after repeated failures`);
  notice(parts.length ? parts.join("; ") : `nothing to do: all ${out.current} images are current`);
}

async function loadGallery() {
  const g = state.gallery;
  const cid = state.collections.selected;
  const data = await api("GET", `/collections/${cid}/images?offset=${g.offset}&limit=${g.limit}`);
  g.images = data.images;
  const box = $("gallery");
  box.replaceChildren(...data.images.map((img, i) => {
    const t = img.renditions.thumbnail || { status: img.supported ? "missing" : "unsupported" };
    const status = img.supported ? t.status : "unsupported";
    return h("figure", { "data-image": img.id, onclick: () => openViewer(i), title: img.path },
      h("div", { class: "thumb" }, status === "missing" || status === "unsupported"
        ? h("span", { class: "placeholder" }, status === "missing" ? "no thumbnail yet" : "not an image")
        : h("img", { src: `${API}/images/${img.id}/thumbnail`, loading: "lazy", alt: basename(img.path), decoding: "async" })),
      h("figcaption", {}, h("span", { class: `dot ${status}`, title: status }), h("span", { class: "name" }, basename(img.path))));
  }));
  if (!data.images.length) box.append(h("div", { class: "empty" }, "No images in this collection."));
  pager($("gallery-pager"), data.total, g, loadGallery);
}

export function openViewer(i) {
  const g = state.gallery;
  if (i < 0 || i >= g.images.length) return;
  state.viewerIndex = i;
  const img = g.images[i];
  const ok = img.renditions.cache && img.renditions.cache.status !== "missing";
  $("viewer-name").textContent = img.path;
  const el = $("viewer-img");
  el.hidden = !ok;
  $("viewer-missing").hidden = ok;
  if (ok) { el.src = `${API}/images/${img.id}/cache`; el.alt = img.path; }
  const dlg = $("viewer");
  if (!dlg.open) dlg.showModal();
}

// -- events --------------------------------------------------------------------------------

export async function loadEvents(after) {
  const e = state.events;
  if (after === undefined) {
    const head = (await api("GET", "/events?after=0&limit=1")).head;
    after = Math.max(0, head - e.limit);
  }
  e.after = after;
  const data = await api("GET", `/events?after=${after}&limit=${e.limit}`);
  $("events").replaceChildren(...data.events.slice().reverse().map((ev) => h("tr", {},
    h("td", { class: "num" }, ev.seq), h("td", {}, ev.type), h("td", { class: "muted" }, ev.stream),
    h("td", { class: "muted" }, new Date(ev.at * 1000).toLocaleString()),
    h("td", { class: "data", title: JSON.stringify(ev.data) }, JSON.stringify(ev.data)))));
  $("events-pager").replaceChildren(
    h("span", {}, data.events.length ? `seq ${data.events[0].seq}–${data.next_after} of ${data.head}` : "empty"),
    h("button", { disabled: after === 0, onclick: () => loadEvents(Math.max(0, after - e.limit)) }, "‹ Older"),
    h("button", { disabled: data.next_after >= data.head, onclick: () => loadEvents(data.next_after) }, "Newer ›"),
    h("button", { onclick: () => loadEvents() }, "Latest"));
}

