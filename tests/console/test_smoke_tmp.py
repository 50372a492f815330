from tests.api.support import RunningApi
from tests.console.support import Browser


async def test_smoke(api: RunningApi) -> None:
    await api.add_user("admin", admin=True)
    b = Browser(api.url)
    r = await b.sign_in("admin")
    assert r.status_code == 303, r.text
    r = await b.get("/devices")
    print(r.status_code, r.text[:3000])
    assert r.status_code == 200
    r = await b.get("/account")
    assert r.status_code == 200, r.text
