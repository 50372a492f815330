"""Every error path answers as the client expects (docs/api.md §0): ``{"error"}`` with
200/4xx, never a 5xx; oversized, malformed and mistyped bodies; unknown routes."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import httpx

from tests.api.support import RunningApi, running_api

USER_ROUTES = [
    ("POST", "/api/logout"),
    ("POST", "/api/currentUser"),
    ("POST", "/api/ab/personal"),
    ("POST", "/api/ab/settings"),
    ("POST", "/api/ab/shared/profiles?current=1&pageSize=100"),
    ("POST", "/api/ab/peers?current=1&pageSize=100&ab={guid}"),
    ("POST", "/api/ab/tags/{guid}"),
    ("POST", "/api/ab/peer/add/{guid}"),
    ("PUT", "/api/ab/peer/update/{guid}"),
    ("DELETE", "/api/ab/peer/{guid}"),
    ("POST", "/api/ab/tag/add/{guid}"),
    ("PUT", "/api/ab/tag/rename/{guid}"),
    ("PUT", "/api/ab/tag/update/{guid}"),
    ("DELETE", "/api/ab/tag/{guid}"),
    ("GET", "/api/users?current=1&pageSize=100"),
    ("GET", "/api/peers?current=1&pageSize=100"),
    ("GET", "/api/device-group/accessible?current=1&pageSize=100"),
]
OPEN_ROUTES = [
    ("POST", "/api/login"),
    ("POST", "/api/heartbeat"),
    ("POST", "/api/sysinfo"),
    ("POST", "/api/audit/conn"),
    ("POST", "/api/audit/file"),
    ("POST", "/api/audit/alarm"),
]


def assert_error(resp: httpx.Response, status: int | None = None) -> None:
    assert resp.status_code < 500, (resp.status_code, resp.text)
    if status is not None:
        assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str)


async def logged_in(api: RunningApi) -> tuple[Any, str]:
    await api.add_user("alice")
    c = api.client()
    await c.login("alice")
    guid = (await c.call("POST", "/api/ab/personal"))["guid"]
    return c, guid


async def test_unknown_routes_and_methods(api: RunningApi) -> None:
    c = api.client()
    for method, path in (
        ("GET", "/api/nothing"),
        ("POST", "/api/ab"),  # legacy address book: 404 is what the client expects
        ("POST", "/api/oidc/auth"),
        ("GET", "/api/audit/conn/active"),
        ("POST", "/api/sysinfo_ver"),
        ("GET", "/../../etc/passwd"),
    ):
        assert_error(await c.request(method, path), 404)
    assert_error(await c.request("GET", "/api/login"), 405)
    assert_error(await c.request("DELETE", "/api/heartbeat"), 405)
    # The root is the web console: signed out, it sends the browser to its sign-in page.
    root = await c.request("GET", "/")
    assert root.status_code == 303 and root.headers["location"].startswith("/login")
    login = await c.request("GET", root.headers["location"])
    assert login.status_code == 200 and "pyhbb" in login.text
    spec = (await c.request("GET", "/api/openapi.json")).json()
    assert spec["openapi"].startswith("3.") and "/api/login" in spec["paths"]


async def test_body_cap(tmp_path: Path) -> None:
    async with running_api(tmp_path, max_body=4096) as api:
        c, guid = await logged_in(api)
        big = b'{"id": "1", "alias": "' + b"x" * 5000 + b'"}'
        assert_error(await c.request("POST", f"/api/ab/peer/add/{guid}", content=big), 413)

        async def chunks() -> Any:  # no Content-Length: counted while read
            for _ in range(10):
                yield b" " * 1000

        async with httpx.AsyncClient(trust_env=False) as http:
            resp = await http.post(
                f"{api.url}/api/heartbeat",
                content=chunks(),
                headers={"Content-Type": "application/json"},
            )
        assert_error(resp, 413)
        assert_error(await c.request("POST", "/api/login", content=b"x" * 10_000), 413)
        # Just under the cap is fine.
        ok = b'{"id": "1", "alias": "' + b"x" * 200 + b'"}'
        resp = await c.request("POST", f"/api/ab/peer/add/{guid}", content=ok)
        assert (resp.status_code, resp.content) == (200, b"")


async def test_malformed_and_mistyped_bodies(api: RunningApi) -> None:
    c, guid = await logged_in(api)
    cases: list[tuple[str, str, bytes]] = [
        ("POST", "/api/login", b"{not json"),
        ("POST", "/api/login", b"[]"),
        ("POST", "/api/login", b'{"username": 5, "password": "x"}'),
        ("POST", "/api/login", b'{"username": "a", "password": "b", "type": "email_code"}'),
        ("POST", "/api/login", b"\xff\xfe"),
        ("POST", "/api/heartbeat", b'{"id": 123456789, "uuid": "AAAA"}'),
        ("POST", "/api/heartbeat", b'{"uuid": "AAAA"}'),
        ("POST", "/api/heartbeat", b'{"id": "1", "ver": "1.4"}'),
        ("POST", "/api/heartbeat", b""),
        ("POST", "/api/sysinfo", b'{"id": "1", "uuid": "AAAA", "os": ["x"]}'),
        ("POST", "/api/audit/conn", b'{"id": "1", "conn_id": "seven"}'),
        ("POST", "/api/audit/file", b'{"id": "1", "is_file": "yes"}'),
        ("POST", "/api/audit/alarm", b'{"id": "1", "typ": 1.5}'),
        ("POST", f"/api/ab/peer/add/{guid}", b'{"alias": "no id"}'),
        ("POST", f"/api/ab/peer/add/{guid}", b'{"id": "1", "tags": "a,b"}'),
        ("POST", f"/api/ab/peer/add/{guid}", b'{"id": "1", "forceAlwaysRelay": 1}'),
        ("PUT", f"/api/ab/peer/update/{guid}", b'{"id": ["1"]}'),
        ("DELETE", f"/api/ab/peer/{guid}", b'{"id": "1"}'),
        ("DELETE", f"/api/ab/peer/{guid}", b"[1, 2]"),
        ("POST", f"/api/ab/tag/add/{guid}", b'{"name": "t"}'),
        ("POST", f"/api/ab/tag/add/{guid}", b'{"name": "t", "color": "red"}'),
        ("POST", f"/api/ab/tag/add/{guid}", b'{"name": "t", "color": 1e300}'),
        ("PUT", f"/api/ab/tag/rename/{guid}", b'{"old": "t"}'),
        ("DELETE", f"/api/ab/tag/{guid}", b'"t"'),
        ("POST", "/api/ab/shared/profiles?current=x&pageSize=100", b""),
        ("POST", "/api/ab/shared/profiles?current=1&pageSize=100000", b""),
        ("POST", f"/api/ab/peers?current=0&ab={guid}", b""),
        ("POST", "/api/ab/peers?current=1&pageSize=100", b""),  # no ab=
        ("GET", "/api/peers?current=99999999999999&pageSize=100", b""),
        ("POST", "/api/login", b"[" * 100_000 + b"]" * 100_000),  # deep nesting
    ]
    for method, path, content in cases:
        resp = await c.request(method, path, content=content)
        assert_error(resp)
        assert resp.status_code in (400, 404), (path, content[:40], resp.status_code)
    # Nothing was stored by the refused calls.
    assert (await c.pages("POST", "/api/ab/peers", f"&ab={guid}")) == []


async def test_database_failure_is_429_with_retry_after(api: RunningApi) -> None:
    c, guid = await logged_in(api)
    with sqlite3.connect(api.options.workdir / "db_v2.sqlite3") as conn:
        conn.execute("drop table api_ab_tag")  # the database breaks behind the server's back
    resp = await c.request("POST", f"/api/ab/tags/{guid}")
    assert_error(resp, 429)
    assert resp.headers["retry-after"] == "10"
    # Other calls still work.
    assert (await c.call("POST", "/api/currentUser"))["name"] == "alice"


async def test_fuzz_never_5xx(api: RunningApi) -> None:
    c, guid = await logged_in(api)
    rng = random.Random(8)
    values: list[Any] = [
        None,
        True,
        0,
        -1,
        1 << 65,
        1.5,
        "",
        "x" * 300,
        "\u0000\ud7ff",
        [],
        ["a", 1],
        {},
        {"a": {"b": []}},
    ]
    keys = [
        "id",
        "uuid",
        "username",
        "password",
        "name",
        "color",
        "old",
        "new",
        "tags",
        "alias",
        "hash",
        "conn_id",
        "nonce",
        "type",
        "typ",
        "info",
        "peer",
        "is_file",
        "note",
        "rdpPort",
        "same_server",
        "deviceInfo",
        "session_id",
        "ver",
        "conns",
    ]
    routes = USER_ROUTES + OPEN_ROUTES
    for i in range(300):
        method, path = rng.choice(routes)
        path = path.format(guid=rng.choice([guid, "nope", "%00", "x" * 100]))
        shape = rng.random()
        if shape < 0.2:
            content = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        elif shape < 0.4:
            content = repr(rng.choice(values)).encode()
        else:
            body = {k: rng.choice(values) for k in rng.sample(keys, rng.randrange(1, 6))}
            content = json.dumps(body).encode()
        headers = {} if rng.random() < 0.8 else {"Authorization": rng.choice(["Bearer x", "", "B"])}
        resp = await c.request(method, path, content=content, headers=headers)
        assert resp.status_code < 500, (i, method, path, content, resp.text)
        assert resp.status_code != 429, resp.text  # 429 would mean a failure inside
        if resp.status_code != 200:
            assert_error(resp)
    await c.login("alice")  # the fuzz may have logged out; the service is still sound
    assert (await c.call("POST", "/api/currentUser"))["name"] == "alice"
