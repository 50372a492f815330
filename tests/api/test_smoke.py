from __future__ import annotations

from tests.api.support import RunningApi


async def test_login_and_pull(api: RunningApi) -> None:
    await api.add_user("alice")
    c = api.client()
    answer = await c.login("alice")
    assert answer["user"]["name"] == "alice" and answer["user"]["info"] == {}
    pulled = await c.pull_address_books()
    assert pulled["user"]["name"] == "alice"
    assert pulled["books"][pulled["personal"]] == {"peers": [], "tags": []}
