"""A web page the operator visits cannot drive a loopback `cerebelum serve`:
foreign `Origin` on a write is 403, a `Host` the server does not answer to
(DNS rebinding) is 403, and neither leaves anything behind.

Against a real server (SQLite: the rule does not depend on the database)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cerebelum.entrypoints.http.origin import AllowedHosts, default_allowed_hosts, split_host
from tests.hostile.test_http_server import serve

FLOW = {"name": "csrf_target", "entrypoint": "wait", "nodes": {"wait": {"type": "delay", "config": {"seconds": 3600}}}}
EVIL = "http://evil.example"


def refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == code, response.text
    assert set(response.json()["error"]) == {"code", "message", "details"}


def test_cross_site_writes_and_rebound_hosts_are_refused(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    with serve(tmp_path, db, "--workers", "1", "--allowed-host", "console.example") as server:
        own = f"http://127.0.0.1:{server.port}"
        api = "/api/v1"
        # a "simple" cross-site request: text/plain needs no preflight, so a page can send it blind
        simple = {"Content-Type": "text/plain", "Origin": EVIL}
        refused(server.request("POST", f"{api}/workflows", content=json.dumps(FLOW), headers=simple), "forbidden_origin")
        assert server.request("GET", f"{api}/workflows/csrf_target").status_code == 404  # nothing created
        for origin in ("null", f"{EVIL}:{server.port}", "http://127.0.0.1.evil.example", f"http://127.0.0.1:{server.port + 1}"):
            answer = server.request("POST", f"{api}/workflows", json=FLOW, headers={"Origin": origin})
            refused(answer, "forbidden_origin")
        assert server.request("GET", f"{api}/workflows/csrf_target").status_code == 404

        # the console's own origin (and a tool without Origin) may write
        assert server.request("POST", f"{api}/workflows", json=FLOW, headers={"Origin": own}).status_code == 201
        started = server.request("POST", f"{api}/executions", json={"workflow": "csrf_target"}, headers={"Origin": own})
        assert started.status_code == 202, started.text
        execution_id = started.json()["execution_id"]
        for method, path in (
            ("POST", f"{api}/executions/{execution_id}/cancel"),
            ("POST", f"{api}/executions/{execution_id}/pause"),
            ("DELETE", f"{api}/workflows/csrf_target/versions/1"),
            ("POST", f"{api}/executions"),
        ):
            refused(server.request(method, path, json={"workflow": "csrf_target"}, headers={"Origin": EVIL}), "forbidden_origin")
        status = server.request("GET", f"{api}/executions/{execution_id}").json()
        assert status["requested"] is None and status["status"] != "failed", status
        assert len(server.request("GET", f"{api}/executions").json()["items"]) == 1

        # DNS rebinding: the page's name resolves to 127.0.0.1, the Host header still names it
        rebound = (f"evil.example:{server.port}", "evil.example", f"127.0.0.1:{server.port + 1}", f"localhost.evil:{server.port}")
        for host in rebound:
            for path in (f"{api}/executions", f"{api}/executions/{execution_id}/events", "/", "/metrics", "/openapi.json"):
                refused(server.request("GET", path, headers={"Host": host}), "forbidden_host")
        # the names it answers to: loopback ones with its port, and --allowed-host (any port)
        for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "console.example", f"console.example:{server.port}"):
            assert server.request("GET", f"{api}/executions", headers={"Host": host}).status_code == 200, host
        allowed = f"http://console.example:{server.port}"
        named = {"Host": f"console.example:{server.port}", "Origin": allowed}
        cancel = server.request("POST", f"{api}/executions/{execution_id}/cancel", headers=named)
        assert cancel.status_code == 200, cancel.text
        # health checks answer whatever the name (probes use the pod's address)
        assert server.request("GET", "/healthz", headers={"Host": "10.1.2.3:9"}).status_code == 200


def test_host_and_origin_rules() -> None:
    assert split_host("LocalHost:8000") == ("localhost", 8000)
    assert split_host("[::1]:80") == ("[::1]", 80)
    assert split_host("::1") == ("[::1]", None)
    assert split_host("a:b")[1] is None and split_host("a:b")[0] != "a"
    assert default_allowed_hosts("127.0.0.1", 8000) == ["127.0.0.1:8000", "localhost:8000", "[::1]:8000"]
    assert default_allowed_hosts("::1", 80) == ["[::1]:80", "localhost:80", "127.0.0.1:80"]
    assert default_allowed_hosts("0.0.0.0", 8000) == ["*"]
    hosts = AllowedHosts(["127.0.0.1:8000", "box"])
    assert "127.0.0.1:8000" in hosts and "127.0.0.1:8001" not in hosts and "127.0.0.1" not in hosts
    assert "box" in hosts and "box:1234" in hosts and "box.evil" not in hosts
    assert "anything" in AllowedHosts(["*"])


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_every_state_changing_method_checks_the_origin(method: str) -> None:
    """In-process: the check runs before routing, so even a method a path lacks is refused."""
    from fastapi.testclient import TestClient

    import cerebelum
    from cerebelum.entrypoints.http import create_app

    with cerebelum.Engine("memory://", workers=0) as engine:
        client = TestClient(create_app(engine))
        answer = client.request(method, "/api/v1/workflows", headers={"Origin": EVIL})
        refused(answer, "forbidden_origin")
        assert client.request("GET", "/api/v1/workflows", headers={"Origin": EVIL}).status_code == 200  # reads: CORS guards them
