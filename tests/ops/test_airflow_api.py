"""The Airflow REST client against a fake API server: auth, trigger body, errors, XCom decoding."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ops.clients.airflow_api import PASSWORDS_FILE, AirflowAPIError, AirflowClient


class FakeAirflow(BaseHTTPRequestHandler):
    password = "s3cret"
    requests: list = []
    expire_next = False

    def _send(self, code, payload):
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n)) if n else None

    def do_POST(self):  # noqa: N802
        body = self._body()
        self.requests.append(("POST", self.path, body, self.headers.get("Authorization")))
        if self.path == "/auth/token":
            ok = body == {"username": "admin", "password": self.password}
            return self._send(201 if ok else 401, {"access_token": "tok"} if ok else {"detail": "bad"})
        if self._expired():
            return None
        if body["conf"].get("max_pages", 1) < 0:
            return self._send(400, {"detail": "Invalid input for param max_pages: "
                                              "-1 is less than the minimum of 1"})
        return self._send(200, {"dag_run_id": "manual__1", "state": "queued", **body})

    def do_GET(self):  # noqa: N802
        self.requests.append(("GET", self.path, None, self.headers.get("Authorization")))
        if self.path == "/auth/token":
            return self._send(201, {"access_token": "anon"})
        if self._expired():
            return None
        if "xcomEntries" in self.path and not self.path.endswith("/missing"):
            return self._send(200, {"key": "return_value", "value": {"rows_out": 3}})
        return self._send(404, {"detail": "not found"})

    def _expired(self) -> bool:
        if FakeAirflow.expire_next:
            FakeAirflow.expire_next = False
            self._send(401, {"detail": "expired"})
            return True
        return False

    def log_message(self, *args):
        pass


@pytest.fixture
def fake():
    FakeAirflow.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAirflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_password_login_and_trigger_body(fake, tmp_path):
    (tmp_path / PASSWORDS_FILE).write_text(json.dumps({"admin": "s3cret"}))
    client = AirflowClient(fake, tmp_path)
    run = client.trigger("data_refresh", {"max_pages": 5})
    assert run["dag_run_id"] == "manual__1"
    method, path, body, auth = FakeAirflow.requests[-1]
    assert (method, path) == ("POST", "/api/v2/dags/data_refresh/dagRuns")
    assert body == {"logical_date": None, "conf": {"max_pages": 5}} and auth == "Bearer tok"


def test_no_login_stack_uses_the_anonymous_token(fake, tmp_path):
    client = AirflowClient(fake, tmp_path)
    assert client.token() == "anon"


def test_bad_params_surface_as_400_with_the_reason(fake, tmp_path):
    client = AirflowClient(fake, tmp_path)
    with pytest.raises(AirflowAPIError) as err:
        client.trigger("data_refresh", {"max_pages": -1})
    assert err.value.status == 400 and "minimum of 1" in str(err.value)


def test_expired_token_is_renewed_once(fake, tmp_path):
    client = AirflowClient(fake, tmp_path)
    client.token()
    FakeAirflow.expire_next = True
    assert client.xcom("data_refresh", "manual__1", "crawl") == {"rows_out": 3}
    assert [r[1] for r in FakeAirflow.requests].count("/auth/token") == 2


def test_missing_xcom_is_none_but_other_404s_raise(fake, tmp_path):
    client = AirflowClient(fake, tmp_path)
    assert client.xcom("data_refresh", "manual__1", "crawl", key="missing") is None
    with pytest.raises(AirflowAPIError) as err:
        client.get_run("x", "y")
    assert err.value.status == 404


def test_unreachable_server_says_to_start_the_stack(tmp_path):
    client = AirflowClient("http://127.0.0.1:9", tmp_path, timeout=2)
    with pytest.raises(AirflowAPIError, match="crawl2model up"):
        client.get_dag("data_refresh")


class FakeRunningTask(BaseHTTPRequestHandler):
    """A run whose one task logs a progress line per poll, then a silent stretch, then success.

    Logs are served a piece at a time: the continuation token is the number of lines already read,
    as Airflow's own token carries the log position."""

    log: list = []
    polls = 0
    tokens: list = []
    finish_after = 9

    def _send(self, payload):
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        from urllib.parse import parse_qs, urlparse

        url = urlparse(self.path)
        if url.path == "/auth/token":
            return self._send({"access_token": "anon"})
        cls = FakeRunningTask
        if url.path.endswith("/dagRuns/r1"):
            cls.polls += 1
            if cls.polls <= 4:  # the job prints a progress line between polls, then goes quiet
                line = f"[0]<stdout>:[progress] pretrain: {cls.polls}/4 steps; {cls.polls} s"
                cls.log.append({"event": line})
            cls.log.append({"event": "some other line"})
            return self._send({"dag_run_id": "r1", "state": "success" if cls.polls > cls.finish_after
                               else "running"})
        if url.path.endswith("/taskInstances"):
            state = "success" if cls.polls > cls.finish_after else "running"
            return self._send({"task_instances": [{"task_id": "train", "state": state, "map_index": -1,
                                                   "try_number": 1, "start_date": "2026-01-01T00:00:00Z"}]})
        if "/taskInstances/train/logs/1" in url.path:
            token = parse_qs(url.query).get("token", [None])[0]
            cls.tokens.append(token)
            start = int(token or 0)
            return self._send({"content": cls.log[start:], "continuation_token": str(len(cls.log))})
        return self._send({})

    def log_message(self, *args):
        pass


def test_waiting_relays_new_progress_lines_once_and_heartbeats_when_quiet(tmp_path):
    FakeRunningTask.log, FakeRunningTask.polls, FakeRunningTask.tokens = [], 0, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRunningTask)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    printed = []
    try:
        client = AirflowClient(f"http://127.0.0.1:{server.server_address[1]}", tmp_path)
        run = client.wait_for_run("pretrain", "r1", timeout=30, poll=0.1, progress=printed.append,
                                  heartbeat=0.35)
    finally:
        server.shutdown()
        server.server_close()
    assert run["state"] == "success"
    relayed = [p for p in printed if "train: [progress]" in p]
    assert [p.split("train: ", 1)[1] for p in relayed] == [
        f"[progress] pretrain: {n}/4 steps; {n} s" for n in range(1, 5)]  # each once, prefix cut
    beats = [p for p in printed if "running train (" in p]
    assert beats, printed  # the quiet polls after the last progress line still say what runs
    assert FakeRunningTask.tokens[0] is None and all(FakeRunningTask.tokens[1:])  # read incrementally


def test_the_heartbeat_speaks_during_a_slow_step_and_waits_keep_the_callers_beat():
    import time

    from ops.clients.airflow_api import Heartbeat, beating

    printed = []
    with Heartbeat(printed.append, every=0.2) as beat:
        beat.status = "talking to Airflow's API"
        time.sleep(0.75)  # e.g. a REST call that takes long: nothing else prints meanwhile
        with beating(beat, 99.0, "pretrain: no asset_triggered run yet") as inner:
            assert inner is beat
            time.sleep(0.5)
        assert beat.status == "talking to Airflow's API"
        beat("a line of our own")
    assert len([p for p in printed if p.endswith("talking to Airflow's API ...")]) >= 2
    assert any(p.endswith("pretrain: no asset_triggered run yet ...") for p in printed)
    count = len(printed)
    time.sleep(0.5)
    assert len(printed) == count  # stopped with the block
