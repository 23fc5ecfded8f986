"""A small client for Airflow 3's REST API (``/api/v2``), standard library only.

The demo and the integration test drive Airflow the way a user or another service would:
over HTTP, never in-process. Only the calls they need are here: token, DAG parsing state,
pause/unpause, trigger with conf, run and task-instance states, XComs, import errors, task logs.

While it waits on a run, :meth:`AirflowClient.wait_for_run` relays each running task's newest
``[progress]`` line (ops/lake/progress.py) from its log, read incrementally through
``GET .../taskInstances/{task_id}/logs/{try_number}`` with the continuation token, and prints a
heartbeat (the running tasks and for how long) when nothing new came for ``heartbeat`` seconds,
so a terminal never sits silent while a job works.

Auth: the simple auth manager. With a login (``C2M_AIRFLOW_LOGIN=1``) the token comes from
``POST /auth/token`` with the generated admin password; on the default no-login local stack
it comes from ``GET /auth/token``.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from datetime import datetime, timezone
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

TERMINAL_RUN_STATES = ("success", "failed")
PROGRESS_MARK = "[progress]"  # ops.lake.progress.PREFIX; this module stays standard library only
HEARTBEAT_S = 12.0  # longest silence while waiting: the poll interval adds at most a few seconds
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"


class AirflowAPIError(RuntimeError):
    """A REST call failed; ``status`` is the HTTP status (0 when unreachable)."""

    def __init__(self, message: str, status: int = 0, detail: Any = None):
        super().__init__(message)
        self.status = status
        self.detail = detail


def q(value: str) -> str:
    return urllib.parse.quote(str(value), safe="")


class AirflowClient:
    """REST client bound to one Airflow API server."""

    def __init__(self, base_url: str, airflow_home: str | Path | None = None, username: str = "admin",
                 timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.airflow_home = Path(airflow_home) if airflow_home else None
        self.username = username
        self.timeout = timeout
        self._token: str | None = None

    # ------------------------------------------------------------ transport
    def _raw(self, method: str, path: str, body: Any = None, auth: bool = True) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                detail = json.loads(raw)
            except ValueError:
                detail = raw.decode(errors="replace")
            return exc.code, detail
        except (urllib.error.URLError, OSError) as exc:
            raise AirflowAPIError(f"Airflow at {self.base_url} is unreachable ({exc}); is the stack up? "
                                  "Run `crawl2model up`.") from exc

    def request(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 204)) -> Any:
        status, payload = self._raw(method, path, body)
        if status == 401:  # token expired: fetch a new one once
            self._token = None
            status, payload = self._raw(method, path, body)
        if status not in ok:
            detail = payload.get("detail", payload) if isinstance(payload, dict) else payload
            raise AirflowAPIError(f"{method} {path} -> HTTP {status}: {detail}", status, detail)
        return payload

    def token(self) -> str:
        if self._token:
            return self._token
        password = self._password()
        if password is not None:
            status, payload = self._raw("POST", "/auth/token",
                                        {"username": self.username, "password": password}, auth=False)
        else:
            status, payload = self._raw("GET", "/auth/token", auth=False)
        if status not in (200, 201) or not isinstance(payload, dict) or "access_token" not in payload:
            raise AirflowAPIError(
                f"could not get an Airflow token (HTTP {status}: {payload}). With a login enabled, the "
                f"admin password is read from {self.airflow_home or '$AIRFLOW_HOME'}/{PASSWORDS_FILE}.",
                status, payload)
        self._token = payload["access_token"]
        return self._token

    def _password(self) -> str | None:
        if not self.airflow_home:
            return None
        path = self.airflow_home / PASSWORDS_FILE
        try:
            return json.loads(path.read_text()).get(self.username)
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------ DAGs
    def health(self) -> dict:
        return self._raw("GET", "/api/v2/monitor/health", auth=False)[1] or {}

    def get_dag(self, dag_id: str) -> dict:
        return self.request("GET", f"/api/v2/dags/{q(dag_id)}")

    def dag_ids(self) -> list[str]:
        return [d["dag_id"] for d in self.request("GET", "/api/v2/dags?limit=1000")["dags"]]

    def import_errors(self) -> list[dict]:
        return self.request("GET", "/api/v2/importErrors?limit=100").get("import_errors", [])

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 180.0, poll: float = 2.0,
                      progress: Callable[[str], None] | None = None, heartbeat: float = HEARTBEAT_S) -> None:
        """Wait until the dag-processor has parsed these DAGs; fail fast on import errors."""
        deadline = time.monotonic() + timeout
        with beating(progress, heartbeat, "the dag-processor is parsing the DAG files"):
            self._wait_for_dags(dag_ids, timeout, poll, deadline)

    def _wait_for_dags(self, dag_ids: list[str], timeout: float, poll: float, deadline: float) -> None:
        while True:
            missing = sorted(set(dag_ids) - set(self.dag_ids()))
            if not missing:
                return
            errors = self.import_errors()
            if errors:
                text = "\n".join(f"{e.get('filename')}:\n{e.get('stack_trace')}" for e in errors)
                raise AirflowAPIError(f"DAG files failed to import ({len(errors)}):\n{text}")
            if time.monotonic() > deadline:
                raise AirflowAPIError(
                    f"DAGs {missing} not parsed after {timeout:.0f} s; see the dag-processor log "
                    "(.stack/logs/airflow-dag-processor.log)")
            time.sleep(poll)

    def set_paused(self, dag_id: str, paused: bool) -> dict:
        return self.request("PATCH", f"/api/v2/dags/{q(dag_id)}", {"is_paused": paused})

    # ------------------------------------------------------------ runs
    def trigger(self, dag_id: str, conf: dict | None = None, logical_date: str | None = None,
                run_id: str | None = None, note: str | None = None) -> dict:
        """Create a DAG run; Param validation failures come back as AirflowAPIError(status=400)."""
        body: dict[str, Any] = {"logical_date": logical_date, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        if note:
            body["note"] = note
        return self.request("POST", f"/api/v2/dags/{q(dag_id)}/dagRuns", body)

    def set_note(self, dag_id: str, run_id: str, note: str) -> dict:
        """Set a DAG run's note (markdown, shown on the run's page)."""
        return self.request("PATCH", f"/api/v2/dags/{q(dag_id)}/dagRuns/{q(run_id)}?update_mask=note",
                            {"note": note})

    def get_run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/api/v2/dags/{q(dag_id)}/dagRuns/{q(run_id)}")

    def list_runs(self, dag_id: str, run_type: str | None = None, limit: int = 50) -> list[dict]:
        """Newest first."""
        query = f"?limit={limit}&order_by=-run_after"
        if run_type:
            query += f"&run_type={q(run_type)}"
        return self.request("GET", f"/api/v2/dags/{q(dag_id)}/dagRuns{query}")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{q(dag_id)}/dagRuns/{q(run_id)}/taskInstances?limit=1000"
        return self.request("GET", path)["task_instances"]

    def clear_tasks(self, dag_id: str, run_id: str, task_ids: list[str]) -> list[dict]:
        """Clear finished tasks of a run so the scheduler runs them again (the UI's "Clear")."""
        body = {"dry_run": False, "dag_run_id": run_id, "task_ids": task_ids, "only_failed": False,
                "reset_dag_runs": True, "include_upstream": False, "include_downstream": False}
        return self.request("POST", f"/api/v2/dags/{q(dag_id)}/clearTaskInstances", body)["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {ti["task_id"]: ti.get("state") for ti in self.task_instances(dag_id, run_id)}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value",
             map_index: int = -1) -> Any:
        """A task's XCom value, decoded (None when the task pushed nothing); ``map_index`` picks one
        task of a mapped task."""
        path = (f"/api/v2/dags/{q(dag_id)}/dagRuns/{q(run_id)}/taskInstances/{q(task_id)}"
                f"/xcomEntries/{q(key)}")
        if map_index >= 0:
            path += f"?map_index={map_index}"
        try:
            value = self.request("GET", path)["value"]
        except AirflowAPIError as exc:
            if exc.status == 404:
                return None
            raise
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1,
                 token: str | None = None) -> tuple[list[str], str | None]:
        """A task try's log lines (each event's text) after ``token`` (from the previous call; none:
        from the start), and the token to continue from (None once the log has ended)."""
        query = f"?map_index={map_index}" + (f"&token={q(token)}" if token else "")
        path = (f"/api/v2/dags/{q(dag_id)}/dagRuns/{q(run_id)}/taskInstances/{q(task_id)}"
                f"/logs/{int(try_number)}{query}")
        payload = self.request("GET", path) or {}
        lines = [str(item.get("event", "")) if isinstance(item, dict) else str(item)
                 for item in payload.get("content") or []]
        return lines, payload.get("continuation_token")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 3600.0, poll: float = 3.0,
                     progress: Callable[[str], None] | None = print, heartbeat: float = HEARTBEAT_S) -> dict:
        """Poll until the run is success/failed; report task-state changes as they happen, relay the
        running tasks' ``[progress]`` lines, and say what runs when nothing new came for ``heartbeat`` s."""
        deadline = time.monotonic() + timeout
        with beating(progress, heartbeat, f"{dag_id}: waiting for the run's state") as say:
            return self._wait_for_run(dag_id, run_id, timeout, poll, deadline, say)

    def _wait_for_run(self, dag_id: str, run_id: str, timeout: float, poll: float, deadline: float,
                      say: "Heartbeat | None") -> dict:
        seen: dict[str, str | None] = {}
        t0 = time.monotonic()
        relay = ProgressRelay(self, dag_id, run_id)
        while True:
            run = self.get_run(dag_id, run_id)
            if say:
                tis = self.task_instances(dag_id, run_id)
                states = {ti["task_id"]: ti.get("state") for ti in tis}
                stamp = f"  [{dag_id} {time.monotonic() - t0:5.0f}s]"
                if any(seen.get(t, "?") != s for t, s in states.items()):
                    text = "  ".join(f"{t}={s or 'none'}" for t, s in states.items())
                    say(f"{stamp} {run['state']}: {text}")
                    seen = states
                for task, line in relay.poll(tis):
                    say(f"{stamp} {task}: {line}")
                say.status = f"{dag_id} {run['state']}: {running_summary(tis)}"
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise AirflowAPIError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f} s")
            time.sleep(poll)

    def wait_for_new_run(self, dag_id: str, after: str, run_type: str | None = None, timeout: float = 300.0,
                         poll: float = 2.0, progress: Callable[[str], None] | None = None,
                         heartbeat: float = HEARTBEAT_S) -> dict:
        """The first run of ``dag_id`` queued at or after the ISO time ``after`` (e.g. asset-triggered)."""
        deadline = time.monotonic() + timeout
        with beating(progress, heartbeat, f"{dag_id}: no {run_type or 'new'} run yet"):
            return self._wait_for_new_run(dag_id, after, run_type, timeout, poll, deadline)

    def _wait_for_new_run(self, dag_id: str, after: str, run_type: str | None, timeout: float, poll: float,
                          deadline: float) -> dict:
        while True:
            runs = [r for r in self.list_runs(dag_id, run_type=run_type)
                    if (r.get("queued_at") or r.get("run_after") or "") >= after]
            if runs:
                return min(runs, key=lambda r: r.get("queued_at") or r.get("run_after") or "")
            if time.monotonic() > deadline:
                raise AirflowAPIError(
                    f"no {run_type or ''} run of {dag_id} appeared within {timeout:.0f} s after {after}; "
                    f"is {dag_id} unpaused and scheduled on the asset?")
            time.sleep(poll)

    def failed_tasks(self, dag_id: str, run_id: str) -> list[dict]:
        return [ti for ti in self.task_instances(dag_id, run_id)
                if ti.get("state") in ("failed", "upstream_failed")]


class Heartbeat:
    """A print callback that remembers when it last printed. Started (a context manager), a thread
    prints ``status`` (what is being waited for) whenever nothing was printed for ``every`` seconds,
    so slow REST answers or a long step never leave the terminal silent."""

    def __init__(self, echo: Callable[[str], None], every: float = HEARTBEAT_S):
        self.echo, self.every = echo, every
        self.status = "working"
        self.started = self.last = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, text: str) -> None:
        with self._lock:
            self.echo(text)
            self.last = time.monotonic()

    def silent_for(self) -> float:
        return time.monotonic() - self.last

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.every / 4)):
            if self.silent_for() >= self.every:
                self(f"  [{time.monotonic() - self.started:5.0f}s] {self.status} ...")

    def __enter__(self) -> "Heartbeat":
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None


@contextlib.contextmanager
def beating(progress: Callable[[str], None] | None, every: float, status: str) -> Iterator[Heartbeat | None]:
    """A started :class:`Heartbeat` around a wait: ``progress`` itself when it is one (already
    beating: only its status changes), else a new one printing through ``progress``; None without it."""
    if progress is None:
        yield None
    elif isinstance(progress, Heartbeat):
        before, progress.status = progress.status, status
        try:
            yield progress
        finally:
            progress.status = before
    else:
        with Heartbeat(progress, every) as beat:
            beat.status = status
            yield beat


class ProgressRelay:
    """The newest ``[progress]`` line of each running task of one run, read from its log a piece at
    a time (the log API's continuation token), each line relayed once."""

    def __init__(self, client: AirflowClient, dag_id: str, run_id: str):
        self.client, self.dag_id, self.run_id = client, dag_id, run_id
        self.tokens: dict[tuple, str] = {}
        self.last: dict[tuple, str] = {}

    def poll(self, task_instances: list[dict]) -> list[tuple[str, str]]:
        """``(task label, progress line)`` for each running task with a new line since the last poll."""
        out = []
        for ti in task_instances:
            if ti.get("state") != "running":
                continue
            map_index = -1 if ti.get("map_index") is None else ti["map_index"]
            key = (ti["task_id"], map_index, ti.get("try_number") or 1)
            try:
                lines, token = self.client.task_log(self.dag_id, self.run_id, ti["task_id"], key[2],
                                                    map_index, self.tokens.get(key))
            except AirflowAPIError:  # no log yet (the task is starting) or a bad token: next poll
                self.tokens.pop(key, None)
                continue
            if token:
                self.tokens[key] = token
            newest = next((ln[ln.index(PROGRESS_MARK):] for ln in reversed(lines) if PROGRESS_MARK in ln),
                          None)
            if newest and newest != self.last.get(key):
                self.last[key] = newest
                out.append((ti["task_id"] + (f"[{map_index}]" if map_index >= 0 else ""), newest))
        return out


def running_summary(task_instances: list[dict]) -> str:
    """``running ingest.crawl (41 s)``, or what the run waits for when no task runs."""
    now = datetime.now(timezone.utc)
    running = []
    for ti in task_instances:
        if ti.get("state") != "running":
            continue
        map_index = ti.get("map_index")
        label = ti["task_id"] + (f"[{map_index}]" if map_index is not None and map_index >= 0 else "")
        try:
            started = datetime.fromisoformat(str(ti.get("start_date")).replace("Z", "+00:00"))
            label += f" ({(now - started).total_seconds():.0f} s)"
        except ValueError:
            pass
        running.append(label)
    if running:
        return "running " + ", ".join(running)
    waiting = sorted({str(ti.get("state")) for ti in task_instances if ti.get("state") not in
                      ("success", "failed", "skipped", "upstream_failed", "removed")})
    if not waiting:
        return "finishing"
    return f"no task running (tasks {', '.join(waiting)}); waiting for the scheduler"
