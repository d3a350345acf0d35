// The processing jobs tab: live rows, controls, a job's failures by class.
import { $, act, api, bytes, collectionName, duration, h, pager, state, when } from "./core.js";

// -- processing jobs --------------------------------------------------------------------

function jobQuery() {
  const j = state.jobs;
  const q = new URLSearchParams({ offset: j.offset, limit: j.limit });
  if (j.status) q.set("status", j.status);
  if (j.collection) q.set("collection", j.collection);
  return q.toString();
}

export async function loadJobs() {
  const data = await api("GET", `/cache/processing-jobs?${jobQuery()}`);
  const body = $("jobs");
  body.replaceChildren(...data.jobs.map(jobRow));
  if (!data.jobs.length) body.append(h("tr", {}, h("td", { colspan: 10, class: "empty" }, "No jobs.")));
  pager($("jobs-pager"), data.total, state.jobs, loadJobs);
  if (state.jobs.selected) await loadJobDetail();
}


const DONE = { pause: "job paused", resume: "job resumed", cancel: "job cancelled", "retry-failed": "retry planned" };

function jobRow(j) {
  const controls = [];
  if (j.status === "running" || j.status === "queued") controls.push(["Pause", "pause"]);
  if (j.status === "paused") controls.push(["Resume", "resume"]);
  if (j.status !== "finished" && j.status !== "cancelled") controls.push(["Cancel", "cancel"]);
  if (j.failed > 0 && j.status === "finished") controls.push(["Retry failed", "retry-failed"]);
  return h("tr", {
      class: `job ${state.jobs.selected === j.id ? "selected" : ""}`, "data-job": j.id,
      onclick: (e) => { if (e.target.tagName !== "BUTTON") { state.jobs.selected = j.id; state.jobs.failOffset = 0; loadJobs(); } },
    },
    h("td", {}, h("span", { class: `badge ${j.status}` }, j.status)),
    h("td", { title: j.collection_id }, collectionName(j.collection_id), " ",
      h("span", { class: "muted" }, j.kinds.join("+"))),
    h("td", {}, h("div", { class: "progress" },
      h("div", { class: "bar", style: "flex:1" }, h("div", { style: `width:${j.percent}%` })),
      h("span", { class: "pct" }, `${j.percent.toFixed(1)} %`))),
    h("td", { class: "num" }, j.generated.toLocaleString()),
    h("td", { class: "num" }, j.skipped.toLocaleString()),
    h("td", { class: `num ${j.failed ? "error" : ""}` }, j.failed.toLocaleString()),
    h("td", { class: "num" }, j.rate ? `${j.rate.toFixed(1)}/s` : "–"),
    h("td", { class: "num" }, j.status === "running" ? duration(j.eta_seconds) : "–"),
    h("td", { class: "muted" }, when(j.planned_at)),
    h("td", { class: "actions" }, controls.map(([label, path]) =>
      h("button", { "data-action": path, onclick: () => act(DONE[path], "POST", `/cache/processing-jobs/${j.id}/${path}`) }, label))));
}

export async function loadJobDetail() {
  const id = state.jobs.selected;
  const box = $("job-detail");
  let job, fails;
  try {
    job = await api("GET", `/cache/processing-jobs/${id}`);
    const q = new URLSearchParams({ offset: state.jobs.failOffset, limit: 50 });
    if (state.jobs.failClass) q.set("class", state.jobs.failClass);
    fails = await api("GET", `/cache/processing-jobs/${id}/failures?${q}`);
  } catch (err) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const classes = Object.entries(job.failed_by_class);
  box.replaceChildren(
    h("div", { class: "toolbar" },
      h("h2", {}, `Job ${job.id.slice(0, 12)} · ${collectionName(job.collection_id)}`),
      h("span", { class: `badge ${job.status}` }, job.status),
      h("div", { class: "spacer" }),
      h("button", { class: "ghost", onclick: () => { state.jobs.selected = null; box.hidden = true; loadJobs(); } }, "Close")),
    h("dl", { class: "stats" },
      h("dt", {}, "Planned"), h("dd", {}, `${job.images.toLocaleString()} images × ${job.kinds.join(", ")} = ${job.total.toLocaleString()} renditions (${job.already_current.toLocaleString()} images already current)`),
      h("dt", {}, "Done"), h("dd", {}, `${job.generated} generated, ${job.skipped} skipped, ${job.failed} failed; ${job.remaining} remaining (${job.percent} %)`),
      h("dt", {}, "Written"), h("dd", {}, bytes(job.bytes)),
      h("dt", {}, "Rate / ETA"), h("dd", {}, `${job.rate} per second / ${duration(job.eta_seconds)}`),
      h("dt", {}, "Last progress"), h("dd", {}, when(job.last_progress_at)),
      job.retry_of ? h("dt", {}, "Retry of") : null, job.retry_of ? h("dd", {}, job.retry_of) : null),
    h("div", { class: "failures" },
      h("h2", {}, `Failures (${fails.total})`),
      classes.length ? h("div", { class: "classes" },
        h("button", { class: state.jobs.failClass ? "" : "on", onclick: () => { state.jobs.failClass = ""; state.jobs.failOffset = 0; loadJobDetail(); } }, "all"),
        classes.map(([cls, n]) => h("button", {
          class: state.jobs.failClass === cls ? "on" : "",
          onclick: () => { state.jobs.failClass = cls; state.jobs.failOffset = 0; loadJobDetail(); },
        }, `${cls} (${n})`))) : h("p", { class: "muted" }, "No failures."),
      fails.failures.length ? h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Image"), h("th", {}, "Kind"), h("th", {}, "Class"), h("th", {}, "Message"))),
        h("tbody", {}, fails.failures.map((f) => h("tr", {},
          h("td", { title: f.image_id }, f.path || f.image_id), h("td", {}, f.kind),
          h("td", {}, h("span", { class: "badge failed" }, f.error_class)), h("td", { class: "muted" }, f.message))))) : null,
      fails.total > 50 ? h("div", { class: "pager" },
        h("button", { disabled: state.jobs.failOffset === 0, onclick: () => { state.jobs.failOffset = Math.max(0, state.jobs.failOffset - 50); loadJobDetail(); } }, "‹ Previous"),
        h("span", {}, `${state.jobs.failOffset + 1}–${Math.min(state.jobs.failOffset + 50, fails.total)} of ${fails.total}`),
        h("button", { disabled: state.jobs.failOffset + 50 >= fails.total, onclick: () => { state.jobs.failOffset += 50; loadJobDetail(); } }, "Next ›")) : null));
}

