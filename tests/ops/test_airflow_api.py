"""The Airflow REST client against a fake API server: auth, trigger body, errors, XCom decoding."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ops.airflow_api import PASSWORDS_FILE, AirflowAPIError, AirflowClient


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
