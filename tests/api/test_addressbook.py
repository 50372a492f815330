"""Address books as the 1.4.x client uses them (docs/api.md #7-#18), over real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyhbb.api import addressbook as ab
from pyhbb.api import jobs
from tests.api.support import ApiError, RdApiClient, RunningApi, running_api


async def logged_in(api: RunningApi, name: str, admin: bool = False) -> RdApiClient:
    await api.add_user(name, admin=admin)
    client = api.client()
    await client.login(name)
    return client


async def share(api: RunningApi, owner: str, name: str, rules: dict[str | None, int]) -> str:
    """Create a shared book (as `pyhbb ab create/share` does) and return its guid."""
    db = api.ctx.db

    def job(conn: Any) -> str:
        from pyhbb.api import users

        owner_user = users.by_name(conn, owner)
        assert owner_user is not None
        book = ab.create_shared(conn, owner_user, name, "team book", 0.0)
        for user_name, rule in rules.items():
            target = None if user_name is None else users.by_name(conn, user_name)
            ab.set_rule(conn, book, target, rule)
        return book.guid

    return await jobs.write(db, job)


async def test_replay_of_the_client_after_login(api: RunningApi) -> None:
    alice = await logged_in(api, "alice")
    pulled = await alice.pull_address_books()
    guid = pulled["personal"]
    assert pulled["settings"] == {"max_peer_one_ab": 0}
    assert pulled["profiles"] == [] and pulled["books"] == {guid: {"peers": [], "tags": []}}
    assert (await alice.call("POST", "/api/ab/personal"))["guid"] == guid  # stable

    # Tags first, then peers, as the client's "add" dialogs do.
    await alice.mutate("POST", f"/api/ab/tag/add/{guid}", {"name": "work", "color": 0xFF2196F3})
    await alice.mutate("POST", f"/api/ab/tag/add/{guid}", {"name": "home", "color": -16777216})
    for i in range(250):  # more than two pages of 100
        entry = {"id": f"{100000000 + i}", "alias": f"pc{i}", "tags": ["work"], "hash": "h"}
        await alice.mutate("POST", f"/api/ab/peer/add/{guid}", entry)
    await alice.mutate(
        "PUT",
        f"/api/ab/peer/update/{guid}",
        {
            "id": "100000001",
            "alias": "renamed",
            "note": "n",
            "tags": ["work", "home"],
            "username": "bob",
            "hostname": "bobs-pc",
            "platform": "Windows",
            "forceAlwaysRelay": "true",
            "rdpPort": "3389",
            "rdpUsername": "administrator",
            "loginName": "bob",
        },
    )
    await alice.mutate("DELETE", f"/api/ab/peer/{guid}", ["100000002", "100000003", "nope"])

    pulled = await alice.pull_address_books()
    book = pulled["books"][guid]
    assert len(book["peers"]) == 248
    assert book["tags"] == [
        {"name": "home", "color": -16777216},
        {"name": "work", "color": 0xFF2196F3},
    ]
    edited = next(p for p in book["peers"] if p["id"] == "100000001")
    assert edited == {
        "id": "100000001",
        "alias": "renamed",
        "tags": ["work", "home"],
        "note": "n",
        "hash": "h",  # the personal book keeps the client's password hash
        "username": "bob",
        "hostname": "bobs-pc",
        "platform": "Windows",
        "forceAlwaysRelay": "true",
        "rdpPort": "3389",
        "rdpUsername": "administrator",
        "loginName": "bob",
        "device_group_name": "",
    }
    assert "password" not in edited

    # Renaming a tag renames it in the peers; deleting one removes it from them.
    await alice.mutate("PUT", f"/api/ab/tag/rename/{guid}", {"old": "work", "new": "office"})
    await alice.mutate("PUT", f"/api/ab/tag/update/{guid}", {"name": "home", "color": 7})
    pulled = await alice.pull_address_books()
    peers = {p["id"]: p for p in pulled["books"][guid]["peers"]}
    assert peers["100000001"]["tags"] == ["office", "home"]
    assert peers["100000000"]["tags"] == ["office"]
    assert pulled["books"][guid]["tags"] == [
        {"name": "home", "color": 7},
        {"name": "office", "color": 0xFF2196F3},
    ]
    await alice.mutate("DELETE", f"/api/ab/tag/{guid}", ["office"])
    pulled = await alice.pull_address_books()
    peers = {p["id"]: p for p in pulled["books"][guid]["peers"]}
    assert peers["100000001"]["tags"] == ["home"] and peers["100000000"]["tags"] == []
    assert pulled["books"][guid]["tags"] == [{"name": "home", "color": 7}]
    # Renaming onto an existing tag merges the two.
    await alice.mutate("POST", f"/api/ab/tag/add/{guid}", {"name": "x", "color": 1})
    await alice.mutate("PUT", f"/api/ab/peer/update/{guid}", {"id": "100000001", "tags": ["x"]})
    await alice.mutate(
        "PUT", f"/api/ab/peer/update/{guid}", {"id": "100000000", "tags": ["home", "x"]}
    )
    await alice.mutate("PUT", f"/api/ab/tag/rename/{guid}", {"old": "x", "new": "home"})
    pulled = await alice.pull_address_books()
    peers = {p["id"]: p for p in pulled["books"][guid]["peers"]}
    assert peers["100000001"]["tags"] == ["home"] and peers["100000000"]["tags"] == ["home"]
    assert pulled["books"][guid]["tags"] == [{"name": "home", "color": 7}]


async def test_a_personal_book_is_nobody_elses(api: RunningApi) -> None:
    alice = await logged_in(api, "alice")
    mallory = await logged_in(api, "mallory")
    admin = await logged_in(api, "root", admin=True)
    guid = (await alice.call("POST", "/api/ab/personal"))["guid"]
    await alice.mutate("POST", f"/api/ab/peer/add/{guid}", {"id": "123456789", "hash": "secret"})
    await alice.mutate("POST", f"/api/ab/tag/add/{guid}", {"name": "t", "color": 1})
    for intruder in (mallory, admin):
        assert (await intruder.call("POST", "/api/ab/personal"))["guid"] != guid
        calls: list[tuple[str, str, Any]] = [
            ("POST", f"/api/ab/peers?current=1&pageSize=100&ab={guid}", None),
            ("POST", f"/api/ab/tags/{guid}", None),
            ("POST", f"/api/ab/peer/add/{guid}", {"id": "987654321"}),
            ("PUT", f"/api/ab/peer/update/{guid}", {"id": "123456789", "alias": "x"}),
            ("DELETE", f"/api/ab/peer/{guid}", ["123456789"]),
            ("POST", f"/api/ab/tag/add/{guid}", {"name": "u", "color": 1}),
            ("PUT", f"/api/ab/tag/rename/{guid}", {"old": "t", "new": "v"}),
            ("PUT", f"/api/ab/tag/update/{guid}", {"name": "t", "color": 2}),
            ("DELETE", f"/api/ab/tag/{guid}", ["t"]),
        ]
        for method, path, body in calls:
            resp = await intruder.request(method, path, body)
            # Exactly as for a book that does not exist.
            assert (resp.status_code, resp.json()) == (404, {"error": ab.NOT_FOUND}), path
        assert guid not in [
            p["guid"] for p in await intruder.pages("POST", "/api/ab/shared/profiles")
        ]
    pulled = await alice.pull_address_books()
    assert pulled["books"][guid] == {
        "peers": [
            {
                "id": "123456789",
                "alias": "",
                "tags": [],
                "note": "",
                "hash": "secret",
                "username": "",
                "hostname": "",
                "platform": "",
                "forceAlwaysRelay": "false",
                "rdpPort": "",
                "rdpUsername": "",
                "loginName": "",
                "device_group_name": "",
            }
        ],
        "tags": [{"name": "t", "color": 1}],
    }


@pytest.mark.parametrize("rule", [ab.READ, ab.READ_WRITE, ab.FULL])
async def test_shared_book_with_each_rule(api: RunningApi, rule: int) -> None:
    owner = await logged_in(api, "owner")
    member = await logged_in(api, "member")
    outsider = await logged_in(api, "outsider")
    guid = await share(api, "owner", "Team", {"member": rule})
    await owner.mutate("POST", f"/api/ab/tag/add/{guid}", {"name": "srv", "color": 5})
    await owner.mutate(
        "POST", f"/api/ab/peer/add/{guid}", {"id": "111222333", "password": "pw", "tags": ["srv"]}
    )
    pulled = await member.pull_address_books()
    assert pulled["profiles"] == [
        {
            "guid": guid,
            "name": "Team",
            "owner": "owner",
            "note": "team book",
            "rule": rule,
            "info": {},
        }
    ]
    (peer,) = pulled["books"][guid]["peers"]
    assert peer["password"] == "pw" and "hash" not in peer  # readers get the password
    assert (await outsider.pull_address_books())["profiles"] == []

    change = member.mutate("POST", f"/api/ab/peer/add/{guid}", {"id": "444555666"})
    tag = member.mutate("PUT", f"/api/ab/tag/rename/{guid}", {"old": "srv", "new": "servers"})
    if rule == ab.READ:
        for attempt in (change, tag):
            with pytest.raises(ApiError) as e:
                await attempt
            assert e.value.status == 403 and "read-only" in e.value.body["error"]
        assert len((await owner.pull_address_books())["books"][guid]["peers"]) == 1
    else:
        await change
        await tag
        book = (await owner.pull_address_books())["books"][guid]
        assert {p["id"] for p in book["peers"]} == {"111222333", "444555666"}
        assert book["tags"] == [{"name": "servers", "color": 5}]
        assert next(p for p in book["peers"] if p["id"] == "111222333")["tags"] == ["servers"]


async def test_rule_for_everyone_and_the_higher_rule_wins(api: RunningApi) -> None:
    await logged_in(api, "owner")
    alice = await logged_in(api, "alice")
    bob = await logged_in(api, "bob")
    guid = await share(api, "owner", "All", {None: ab.READ, "bob": ab.READ_WRITE})
    rules = {c: (await c.pages("POST", "/api/ab/shared/profiles"))[0]["rule"] for c in (alice, bob)}
    assert rules == {alice: ab.READ, bob: ab.READ_WRITE}
    await bob.mutate("POST", f"/api/ab/peer/add/{guid}", {"id": "1"})
    with pytest.raises(ApiError):
        await alice.mutate("POST", f"/api/ab/peer/add/{guid}", {"id": "2"})


async def test_max_peer_one_ab(tmp_path: Path) -> None:
    async with running_api(tmp_path, max_peer_one_ab=2) as api:
        alice = await logged_in(api, "alice")
        pulled = await alice.pull_address_books()
        assert pulled["settings"] == {"max_peer_one_ab": 2}
        guid = pulled["personal"]
        for peer_id in ("1", "2", "2"):  # re-adding an existing peer is an update
            await alice.mutate("POST", f"/api/ab/peer/add/{guid}", {"id": peer_id})
        with pytest.raises(ApiError) as e:
            await alice.mutate("POST", f"/api/ab/peer/add/{guid}", {"id": "3"})
        assert e.value.status == 403 and "full" in e.value.body["error"]


async def test_unknown_peer_and_tag_are_errors_not_silent(api: RunningApi) -> None:
    alice = await logged_in(api, "alice")
    guid = (await alice.call("POST", "/api/ab/personal"))["guid"]
    for method, path, body in (
        ("PUT", f"/api/ab/peer/update/{guid}", {"id": "nope", "alias": "x"}),
        ("PUT", f"/api/ab/tag/rename/{guid}", {"old": "nope", "new": "x"}),
        ("PUT", f"/api/ab/tag/update/{guid}", {"name": "nope", "color": 1}),
    ):
        resp = await alice.request(method, path, body)
        assert resp.status_code == 404 and "not in this address book" in resp.json()["error"]
