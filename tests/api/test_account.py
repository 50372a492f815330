"""Accounts over real HTTP (docs/api.md #1-#4, #21): login, tokens, limits, restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pyhbb.api import users
from tests.api.support import ApiError, RunningApi, running_api


async def test_login_current_user_logout(api: RunningApi) -> None:
    await api.add_user("alice", "pa55")
    c = api.client()
    answer = await c.login("alice", "pa55")
    assert answer["user"] == {
        "name": "alice",
        "display_name": "",
        "avatar": "",
        "email": "",
        "note": "",
        "status": 1,
        "is_admin": False,
        "info": {},
    }
    me = await c.call("POST", "/api/currentUser", {"id": c.device_id, "uuid": c.uuid_b64})
    assert me["name"] == "alice" and me["info"] == {}
    assert (await c.request("GET", "/api/login-options")).json() == []
    resp = await c.request("POST", "/api/logout", {"id": c.device_id, "uuid": c.uuid_b64})
    assert resp.status_code == 200 and resp.content == b""
    # The token is gone: currentUser now logs the client out (401).
    resp = await c.request("POST", "/api/currentUser", {"id": c.device_id, "uuid": c.uuid_b64})
    assert resp.status_code == 401 and "error" in resp.json()


async def test_wrong_password_unknown_user_and_bad_tokens(api: RunningApi) -> None:
    await api.add_user("alice", "pa55")
    c = api.client()
    for name, password in (("alice", "nope"), ("mallory", "pa55")):
        resp = await c.request(
            "POST", "/api/login", {"username": name, "password": password, "id": "1", "uuid": ""}
        )
        # The same answer for both, so names cannot be probed.
        assert resp.status_code == 401
        assert resp.json() == {"error": "Wrong user name or password"}
    for header in ("", "Bearer", "Bearer nonsense", "Basic YTpi"):
        resp = await c.request("POST", "/api/ab/personal", headers={"Authorization": header})
        assert resp.status_code == 401 and set(resp.json()) == {"error"}


async def test_user_names_are_case_insensitive_and_unique(api: RunningApi) -> None:
    await api.add_user("Alice", "pa55")
    await api.client().login("alice", "pa55")
    try:
        await api.add_user("ALICE")
    except Exception as e:
        assert "already exists" in str(e)
    else:
        raise AssertionError("a second Alice was created")


async def test_one_token_per_user_and_device(api: RunningApi) -> None:
    await api.add_user("alice")
    first = api.client()
    await first.login("alice")
    old = first.token
    await first.login("alice")  # the same device logs in again: the old token ends
    assert (await first.request("POST", "/api/ab/personal", headers={})).status_code == 200
    first.token = old
    assert (await first.request("POST", "/api/ab/personal")).status_code == 401
    other = api.client()  # another device keeps its own token
    await other.login("alice")
    with sqlite3.connect(api.options.workdir / "db_v2.sqlite3") as conn:
        assert conn.execute("select count(*) from api_token").fetchone() == (2,)
        # Only hashes are stored, never the token itself.
        hashes = [bytes(h) for (h,) in conn.execute("select hash from api_token")]
    assert other.token.encode() not in hashes and all(len(h) == 32 for h in hashes)


async def test_login_rate_limits(tmp_path: Path) -> None:
    async with running_api(tmp_path, login_burst_per_ip=4, login_failures_per_user=2) as api:
        await api.add_user("alice", "right")
        c = api.client()
        bad = {"username": "alice", "password": "wrong", "id": "1", "uuid": ""}
        for _ in range(2):
            assert (await c.request("POST", "/api/login", bad)).status_code == 401
        # Two failures for alice: now even the right password is refused for a while.
        resp = await c.request("POST", "/api/login", {**bad, "password": "right"})
        assert resp.status_code == 429 and "Too many login attempts" in resp.json()["error"]
        # Per IP: a burst of 4 checked attempts (refused ones are not checked), any name.
        await api.add_user("bob", "right")
        await c.login("bob", "right")  # the 3rd
        assert (
            await c.request("POST", "/api/login", {**bad, "username": "bob"})
        ).status_code == 401
        resp = await c.request("POST", "/api/login", {**bad, "username": "bob"})
        assert resp.status_code == 429
        # Another client address (through a trusted proxy, as hbbs's tunnel) is not limited.
        fwd = {"X-Forwarded-For": "198.51.100.7"}
        resp = await c.request(
            "POST", "/api/login", {**bad, "username": "bob", "password": "right"}, headers=fwd
        )
        assert resp.status_code == 200 and resp.json()["access_token"]


async def test_disabled_user_stops_at_once_and_tokens_survive_restart(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        await api.add_user("alice")
        await api.add_user("bob")
        alice, bob = api.client(), api.client()
        await alice.login("alice")
        await bob.login("bob")
        personal = (await alice.call("POST", "/api/ab/personal"))["guid"]
        await alice.mutate("POST", f"/api/ab/peer/add/{personal}", {"id": "123456789"})
    # A restart of the service: both tokens and the book are still there.
    async with running_api(tmp_path) as api:
        alice.url = bob.url = api.url  # a new port, the same working directory
        assert (await alice.call("POST", "/api/ab/personal"))["guid"] == personal
        assert [p["id"] for p in await alice.pages("POST", "/api/ab/peers", f"&ab={personal}")] == [
            "123456789"
        ]
        await bob.call("POST", "/api/currentUser")
        # Disabled (as `pyhbb user disable` does, in another process): refused at once.
        await api.ctx.accounts.set_status("bob", users.DISABLED)
        resp = await bob.request("POST", "/api/currentUser")
        assert resp.status_code == 401
        try:
            await bob.login("bob")
        except ApiError as e:
            assert e.status == 401
        else:
            raise AssertionError("a disabled user logged in")
        await api.ctx.accounts.set_status("bob", users.ENABLED)
        await bob.login("bob")


async def test_users_list_visibility(api: RunningApi) -> None:
    await api.add_user("admin", admin=True)
    for name in ("alice", "bob"):
        await api.add_user(name)
    await api.ctx.accounts.set_status("bob", users.DISABLED)
    admin, alice = api.client(), api.client()
    await admin.login("admin")
    await alice.login("alice")
    everyone = await admin.pages("GET", "/api/users", "&accessible=&status=1")
    assert [u["name"] for u in everyone] == ["admin", "alice"]  # status=1: enabled only
    assert [u["name"] for u in await admin.pages("GET", "/api/users")] == [
        "admin",
        "alice",
        "bob",
    ]
    assert [u["name"] for u in await alice.pages("GET", "/api/users", "&status=1")] == ["alice"]
