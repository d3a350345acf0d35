"""`imagecache scheduler`: maintenance on a schedule (APScheduler), with the projector running.

Each task is also a CLI command; schedules and thresholds are settings:

| task | setting (seconds) | default |
|---|---|---|
| recover stale jobs | IMAGECACHE_RECOVER_EVERY | 60 |
| failure-rate alerts | IMAGECACHE_ALERTS_EVERY | 60 |
| capacity enforcement | IMAGECACHE_CAPACITY_EVERY | 600 |
| statistics reconciliation | IMAGECACHE_RECONCILE_EVERY | 3600 |
| missing-file repair | IMAGECACHE_REPAIR_EVERY | 86400 |
| orphan cleanup | IMAGECACHE_CLEANUP_EVERY | 86400 |
| scan the library, plan what changed | IMAGECACHE_SCAN_EVERY | 3600 |

Embedded (no MONGODB_URI, no RABBITMQ_URL), the process that runs the work (`up` while it
serves, `serve`) runs these tasks itself, but for recover: it takes up unfinished jobs
every few seconds anyway. No scheduler process is needed there; one started alone
becomes that process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Container, Mapping
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from ops import library, maintenance
from ops.bootstrap import App
from ops.settings import env_int

log = logging.getLogger("imagecache.scheduler")

DEFAULTS = {
    "recover": 60,
    "alerts": 60,
    "capacity": 600,
    "reconcile": 3600,
    "repair": 86_400,
    "cleanup": 86_400,
    "scan": 3600,
}


def tasks(app: App) -> dict[str, Callable[[], Any]]:
    """The maintenance tasks, bound to an App and its settings."""
    s = app.settings
    return {
        "recover": lambda: maintenance.recover(app, stale_after=s.stale_after),
        "alerts": lambda: maintenance.failure_alerts(
            app, threshold=s.alert_threshold, webhook=s.alert_webhook
        ),
        "capacity": lambda: maintenance.enforce_capacity(app),
        "reconcile": lambda: maintenance.reconcile(app),
        "repair": lambda: maintenance.repair_missing(app),
        "cleanup": lambda: maintenance.cleanup(app, dry_run=False, older_than_days=s.orphan_days),
        "scan": lambda: library.refresh(app),
    }


def _guarded(name: str, task: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            result = task()
        except Exception:
            log.exception("%s failed; it runs again at its next time", name)
            return
        # The frequent tasks mostly find nothing to do: say so only with -v.
        level = logging.INFO if _did_something(result) else logging.DEBUG
        log.log(level, "%s done: %s", name, _short(result))

    return run


def _did_something(result: Any) -> bool:
    """Whether a task's report holds anything: a count, a job, a folder, an alert."""
    if isinstance(result, dict):
        return any(_did_something(v) for v in result.values())
    return bool(result)


def _short(result: Any) -> str:
    text = repr(result)
    return text if len(text) < 300 else text[:297] + "..."


def start_schedule(
    app: App, env: Mapping[str, str], *, without: Container[str] = ()
) -> BackgroundScheduler:
    """Start every task (but those named in `without`) on its interval, in the background."""
    scheduler = BackgroundScheduler()
    on, off = [], []
    for name, task in tasks(app).items():
        if name in without:
            continue
        every = env_int(env, f"IMAGECACHE_{name.upper()}_EVERY", DEFAULTS[name], lo=0)
        if every <= 0:
            off.append(f"{name} (IMAGECACHE_{name.upper()}_EVERY=0)")
            continue
        scheduler.add_job(
            _guarded(name, task), "interval", seconds=every, id=name,
            max_instances=1, coalesce=True,
        )  # fmt: skip
        on.append(f"{name} every {every} s")
    log.info(
        "maintenance: %s%s", ", ".join(on) or "nothing", f"; off: {', '.join(off)}" if off else ""
    )
    scheduler.start()
    return scheduler


def run_scheduler(app: App, env: Mapping[str, str], stop: threading.Event) -> int:
    """Run every task on its interval until `stop` is set."""
    app.start_projector()
    # Embedded, the runner of the data folder takes up unfinished jobs itself.
    scheduler = start_schedule(app, env, without={"recover"} if app.embedded else ())
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)
    return 0
