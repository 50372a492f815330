"""The web console over real HTTP, with a real hbbs and hbbr on loopback: who may do
what, CSRF and sessions, deleting a device (the ID registers again over UDP), a user made
in the console logging in from a RustDesk-like client, the client configuration."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from pyhbb.api.console.clientconfig import QR_PREFIX, decode_config_string
from pyhbb.wire import rendezvous_pb2 as pb
from tests.api.support import RunningApi
from tests.console.stack import running_stack
from tests.console.support import Browser, hidden
from tests.support.rdclient import UdpPeer

ADMIN_GETS = ["/users", "/user?name=admin", "/groups", "/server"]
ADMIN_POSTS = [
    "/users/create", "/user/status", "/user/admin", "/user/password", "/groups/create",
    "/groups/delete", "/device/edit", "/device/disable", "/device/delete", "/books/create",
    "/server/relays", "/server/block", "/server/unblock", "/server/forgive",
]  # fmt: skip


async def signed_in(api: RunningApi, name: str, admin: bool = False) -> Browser:
    await api.add_user(name, admin=admin)
    browser = Browser(api.url)
    assert (await browser.sign_in(name)).status_code == 303
    return browser


async def test_sign_in_sessions_and_csrf(api: RunningApi) -> None:
    admin = await signed_in(api, "admin", admin=True)
    cookie = admin.http.cookies["pyhbb_session"]
    set_cookie = (await _fresh_sign_in(api, "admin")).headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie
    assert "Secure" not in set_cookie  # plain HTTP here

    # A form without the token, with a wrong one, or from another site: 403, no change.
    attempts = (  # (form, add the page's token, Origin)
        ({"name": "x1", "password": "p", "again": "p"}, False, None),
        ({"name": "x2", "password": "p", "again": "p", "csrf": "0" * 64}, False, None),
        ({"name": "x3", "password": "p", "again": "p"}, True, "http://evil.example"),
    )
    for data, token, origin in attempts:
        resp = await admin.post("/users/create", data, csrf=token, origin=origin)
        assert resp.status_code == 403, resp.text
    users = (await admin.get("/users")).text
    assert "x1" not in users and "x2" not in users and "x3" not in users
    resp = await admin.post("/users/create", {"name": "x4", "password": "p", "again": "p"})
    assert resp.status_code == 303 and "x4" in (await admin.get("/users")).text

    # A made-up session cookie: sent to sign in (GET), refused (POST).
    forged = Browser(api.url)
    forged.http.cookies.set("pyhbb_session", "not-a-session")
    resp = await forged.get("/devices")
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")
    resp = await forged.post("/users/create", {"name": "x5", "password": "p", "again": "p"})
    assert resp.status_code == 403

    # Sign-out ends the session on the server: the old cookie is worthless afterwards.
    assert (await admin.post("/logout", {})).status_code == 303
    stale = Browser(api.url)
    stale.http.cookies.set("pyhbb_session", cookie)
    assert (await stale.get("/devices")).status_code == 303


async def _fresh_sign_in(api: RunningApi, name: str):  # type: ignore[no-untyped-def]
    browser = Browser(api.url)
    page = await browser.http.get("/login")
    return await browser.http.post(
        "/login",
        data={"name": name, "password": "secret", "nonce": hidden(page.text, "nonce")},
        headers={"Origin": api.url},
    )


async def test_secure_cookie_behind_a_trusted_https_proxy(api: RunningApi) -> None:
    await api.add_user("admin", admin=True)
    browser = Browser(api.url)
    page = await browser.http.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in page.headers["set-cookie"]
    # httpx keeps Secure cookies for https only; the proxy would have carried it back.
    nonce = hidden(page.text, "nonce")
    browser.http.cookies.set("pyhbb_login", nonce)
    resp = await browser.http.post(
        "/login",
        data={"name": "admin", "password": "secret", "nonce": nonce},
        headers={"Origin": api.url, "X-Forwarded-Proto": "https"},
    )
    assert resp.status_code == 303 and "Secure" in resp.headers["set-cookie"]


async def test_disabling_a_user_ends_their_console_session(api: RunningApi) -> None:
    admin = await signed_in(api, "admin", admin=True)
    bob = await signed_in(api, "bob")
    assert (await bob.get("/devices")).status_code == 200
    await admin.get("/user?name=bob")
    resp = await admin.post("/user/status", {"name": "bob", "status": "0"})
    assert resp.status_code == 303
    assert (await bob.get("/devices")).status_code == 303  # at once
    # An admin cannot lock themselves out.
    await admin.get("/users")
    resp = await admin.post("/user/status", {"name": "admin", "status": "0"})
    assert resp.status_code == 400 and "your own account" in resp.text


async def test_wrong_password_and_the_rate_limit_shared_with_the_api(tmp_path: Path) -> None:
    from tests.api.support import running_api

    async with running_api(tmp_path, login_failures_per_user=3) as api:
        await api.add_user("carol")
        client = api.client()
        for _ in range(3):
            resp = await client.request(
                "POST", "/api/login", {"username": "carol", "password": "bad", "id": "1",
                                       "uuid": client.uuid_b64}, auth=False)  # fmt: skip
            assert resp.status_code == 401
        # The API's failures count for the console too: the right password waits.
        browser = Browser(api.url)
        resp = await browser.sign_in("carol")
        assert resp.status_code == 429 and "Too many login attempts" in resp.text
        browser2 = Browser(api.url)
        resp = await browser2.sign_in("nobody", "bad")
        assert resp.status_code == 401 and "Wrong user name or password" in resp.text


async def test_a_plain_user_cannot_open_admin_pages(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as s:
        await signed_in(s.api, "admin", admin=True)
        bob = await signed_in(s.api, "bob")
        for path in ADMIN_GETS:
            resp = await bob.get(path)
            assert resp.status_code == 403 and "administrators only" in resp.text, path
        for path in ADMIN_POSTS:
            resp = await bob.post(path, {"name": "x", "id": "x", "ip": "1.2.3.4"})
            assert resp.status_code == 403, path
        # No admin links in the menu either.
        assert 'href="/server"' not in (await bob.get("/devices")).text


async def test_devices_owners_and_delete_then_register_again(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as s:
        admin = await signed_in(s.api, "admin", admin=True)
        bob = await signed_in(s.api, "bob")
        udp = await UdpPeer.open(s.hbbs.udp, "127.0.0.2")
        await udp.register("device01", uuid=b"first-machine")
        await udp.register("device02", uuid=b"other-machine")

        page = (await admin.get("/devices")).text
        assert "device01" in page and "device02" in page
        assert 'data-online-id="device01"' in page and 'class="dot on"' in page
        # bob owns nothing yet: he sees no device, not even by URL.
        assert "device01" not in (await bob.get("/devices")).text
        assert (await bob.get("/device?id=device01")).status_code == 404
        online = (await bob.get("/devices/online.json?id=device01")).json()
        assert online["online"] == {}

        await admin.get("/device?id=device01")
        resp = await admin.post(
            "/device/edit", {"id": "device01", "note": "front desk", "owner": "bob", "group": ""}
        )
        assert resp.status_code == 303
        assert "front desk" in (await bob.get("/devices")).text
        online = (await bob.get("/devices/online.json?id=device01&id=device02")).json()
        assert online["online"] == {"device01": True}

        csv = (await admin.get("/devices.csv")).text.splitlines()
        assert csv[0].startswith("id,online,hostname") and len(csv) == 3
        assert csv[1].startswith("device01,yes,") and "front desk" in csv[1]

        # Another machine cannot take device01 while it is registered...
        intruder = await UdpPeer.open(s.hbbs.udp, "127.0.0.3")
        assert await intruder.register_pk("device01", b"intruder", b"k" * 32) == (
            pb.RegisterPkResponse.UUID_MISMATCH
        )
        # ...but once the console deleted it, the ID is free (hbbs forgot its record).
        await admin.get("/device?id=device01")
        resp = await admin.post("/device/delete", {"id": "device01"})
        assert resp.status_code == 400  # not confirmed
        resp = await admin.post("/device/delete", {"id": "device01", "confirm": "1"})
        assert resp.status_code == 303
        page = (await admin.get("/devices")).text
        assert "Device device01 deleted; the ID can register again." in page
        assert "hbbs could not be told" not in page
        assert 'href="/device?id=device01"' not in page and "1 registered" in page
        # The old machine's next heartbeat is asked for its key, and registers anew.
        assert await udp.register_peer("device01") is True
        await udp.register("device01", uuid=b"first-machine")
        rows = _peer_rows(tmp_path, "device01")
        assert rows == [b"first-machine"]
        page = (await admin.get("/devices")).text
        assert 'href="/device?id=device01"' in page and "front desk" not in page  # a new one


def _peer_rows(workdir: Path, peer_id: str) -> list[bytes]:
    with sqlite3.connect(workdir / "db_v2.sqlite3") as conn:
        return [bytes(r[0]) for r in conn.execute("select uuid from peer where id = ?", (peer_id,))]


async def test_deleted_id_can_be_taken_by_another_machine(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as s:
        admin = await signed_in(s.api, "admin", admin=True)
        udp = await UdpPeer.open(s.hbbs.udp, "127.0.0.2")
        await udp.register("stale01", uuid=b"retired-machine")
        await admin.get("/device?id=stale01")
        resp = await admin.post("/device/delete", {"id": "stale01", "confirm": "1"})
        assert resp.status_code == 303
        newcomer = await UdpPeer.open(s.hbbs.udp, "127.0.0.4")
        await newcomer.register("stale01", uuid=b"new-machine")
        assert _peer_rows(tmp_path, "stale01") == [b"new-machine"]


async def test_user_made_in_the_console_uses_the_rustdesk_api(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as s:
        admin = await signed_in(s.api, "admin", admin=True)
        await admin.get("/users")
        resp = await admin.post(
            "/users/create", {"name": "dana", "password": "pa55word", "again": "pa55word"}
        )
        assert resp.status_code == 303
        await admin.get("/books")
        resp = await admin.post("/books/create", {"name": "Support", "owner": "admin"})
        assert resp.status_code == 303
        guid = resp.headers["location"].split("guid=", 1)[1]
        await admin.get(f"/book?guid={guid}")
        await admin.post("/book/rule", {"guid": guid, "user": "dana", "rule": "read"})
        await admin.post(
            "/book/entry/add",
            {"guid": guid, "id": "123456789", "alias": "reception", "tags": "front, desk"},
        )

        client = s.api.client()
        await client.login("dana", "pa55word")
        pulled = await client.pull_address_books()
        (profile,) = pulled["profiles"]
        assert profile["name"] == "Support" and profile["rule"] == 1
        (entry,) = pulled["books"][profile["guid"]]["peers"]
        assert entry["id"] == "123456789" and entry["alias"] == "reception"
        assert entry["tags"] == ["front", "desk"]

        # dana sees her own book in the console; admins cannot open it.
        dana = Browser(s.api.url)
        assert (await dana.sign_in("dana", "pa55word")).status_code == 303
        books = (await dana.get("/books")).text
        personal = re.search(r'href="/book\?guid=([^"]+)">My address book', books)
        assert personal is not None and "Support" in books
        assert (await dana.get(f"/book?guid={personal.group(1)}")).status_code == 200
        assert (await admin.get(f"/book?guid={personal.group(1)}")).status_code == 404
        # Read-only for dana: adding is refused by the same rule as in the API.
        resp = await dana.post("/book/entry/add", {"guid": guid, "id": "42"})
        assert resp.status_code == 403


async def test_server_page_config_relays_and_block_list(tmp_path: Path) -> None:
    async with running_stack(tmp_path, public_host="rd.example.com") as s:
        admin = await signed_in(s.api, "admin", admin=True)
        page = (await admin.get("/server")).text
        string = re.search(r'<code id="config-string">([^<]+)</code>', page)
        assert string is not None
        config = decode_config_string(string.group(1))
        assert config["host"] == f"rd.example.com:{s.hbbs.opts.port}"  # not 21116 here
        assert config["key"] == s.hbbs.public_key
        assert config["api"] == f"http://rd.example.com:{s.api.options.port}"
        assert f"{QR_PREFIX}{string.group(1)}" in page
        assert f"rustdesk-licensed-{string.group(1)}.exe" in page
        assert "<svg" in page and "peers online" in page

        resp = await admin.post("/server/block", {"ip": "203.0.113.9"})
        assert resp.status_code == 303
        assert "203.0.113.9" in s.relay.blocklist
        assert "<code>203.0.113.9</code>" in (await admin.get("/server")).text
        await admin.post("/server/unblock", {"ip": "203.0.113.9"})
        assert "203.0.113.9" not in s.relay.blocklist
        assert (await admin.post("/server/block", {"ip": "not an ip"})).status_code == 400

        await admin.post("/server/relays", {"relays": "127.0.0.1:21117"})
        assert "127.0.0.1:21117" in (await admin.get("/server")).text


@pytest.mark.parametrize(
    "path",
    ["/devices?sort=nope", "/devices?size=7", "/devices?after=%%%", "/devices?order=up",
     "/logs/connections?from=yesterday", "/logs/files?before=x", "/book?guid=nope",
     "/user?name=ghost", "/device?id=ghost", "/static/nope.js", "/nowhere"],
)  # fmt: skip
async def test_bad_input_is_a_clear_4xx(api: RunningApi, path: str) -> None:
    admin = await signed_in(api, "admin", admin=True)
    resp = await admin.get(path)
    assert 400 <= resp.status_code < 500, (path, resp.status_code)
    assert "<p" in resp.text
