"""The console in a real browser (headless Chromium through WebDriver), against a real
hbbs, hbbr and API server: sign in, live online state of a device registered over UDP,
a user made in the console logging in from a RustDesk-like client, a plain user kept out
of admin pages, CSRF and bad sessions refused, the QR code read back by a real decoder.
Every page visited is saved as a screenshot under tests/artifacts/console/."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.console.browser import ARTIFACTS, ThreadedStack, chrome, find_browser
from tests.support.rdclient import UdpPeer

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _browser_present() -> None:
    find_browser()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Page:
    def __init__(self, driver: Any, url: str) -> None:
        self.d = driver
        self.url = url
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def open(self, path: str, shot: str | None = None) -> None:
        self.d.get(self.url + path)
        if shot:
            self.shot(shot)

    def shot(self, name: str) -> None:
        self.d.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.CSS_SELECTOR, css)

    def fill(self, fields: dict[str, str]) -> None:
        for element_id, value in fields.items():
            box = self.find(f"#{element_id}")
            box.clear()
            box.send_keys(value)

    def submit(self, css: str = "main form button[type=submit]") -> None:
        self.find(css).click()

    def text(self) -> str:
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(20):  # the page may be navigating right now
            try:
                return str(self.find("body").text)
            except StaleElementReferenceException:
                time.sleep(0.1)
        raise AssertionError("the page kept changing")

    def sign_in(self, name: str, password: str = "secret") -> None:
        self.open("/login")
        self.fill({"name": name, "password": password})
        self.submit()
        wait_for("the device list", lambda: self.d.current_url.endswith("/devices"))


def test_console_in_a_browser(tmp_path: Path) -> None:
    servers = ThreadedStack(tmp_path, public_host="rd.example.com")
    with servers as stack, chrome() as driver:
        api, threaded = stack.api, servers.run
        threaded(api.add_user("admin", admin=True))
        page = Page(driver, api.url)

        # Signed out, every page leads to the sign-in form; a wrong password says so.
        page.open("/devices", "login")
        assert "/login" in driver.current_url
        page.fill({"name": "admin", "password": "wrong"})
        page.submit()
        assert "Wrong user name or password" in page.text()
        page.shot("login-failed")
        page.sign_in("admin")
        page.shot("devices-empty")

        # A device registers over UDP: it appears, online, without a reload.
        peer = threaded(UdpPeer.open(stack.hbbs.udp, "127.0.0.2"))
        threaded(peer.register("browser01", uuid=b"browser-machine"))
        page.open("/devices")
        driver.execute_script("window.__notReloaded = true;")
        dot = page.find('[data-online-id="browser01"]')
        wait_for("the online dot", lambda: "on" in dot.get_attribute("class").split())
        page.shot("devices")
        assert driver.execute_script("return window.__notReloaded === true;")
        page.open("/device?id=browser01", "device")

        # Users: create one in the form; it logs in from a RustDesk-like client.
        page.open("/users")
        page.fill({"name": "erin", "password": "erin-pass", "again": "erin-pass"})
        page.submit()
        wait_for("erin's page", lambda: "User erin" in page.text())
        page.shot("user")
        page.open("/users", "users")
        page.open("/books")
        page.fill({"name": "Field team", "owner": "admin"})
        page.submit()
        wait_for("the new book", lambda: "Field team" in page.text())
        page.fill({"rule-user": "erin"})
        page.submit("form[action='/book/rule'] button")
        wait_for("the rule", lambda: "erin: read" in page.text())
        page.fill({"id": "555000111", "alias": "warehouse"})
        page.submit("form[action='/book/entry/add'] button")
        wait_for("the entry", lambda: "warehouse" in page.text())
        page.shot("book")
        client = api.client()
        threaded(client.login("erin", "erin-pass"))
        pulled = threaded(client.pull_address_books())
        (profile,) = pulled["profiles"]
        assert profile["name"] == "Field team"
        assert [e["alias"] for e in pulled["books"][profile["guid"]]["peers"]] == ["warehouse"]

        for name in ("books", "groups", "account", "logs/connections", "logs/files",
                     "logs/alarms", "logs/signins"):  # fmt: skip
            page.open(f"/{name}", name.replace("/", "-"))
            assert "That did not work" not in page.text()

        # The server page: its QR code, as the browser draws it, decodes to the string.
        page.open("/server", "server")
        string = page.find("#config-string").text
        qr = page.find("#qr svg")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", qr)
        png = qr.screenshot_as_png
        assert _decode_qr(png) == "config=" + string
        assert "rd.example.com" in page.find("#id-server").text

        # CSRF: a form whose token was changed is refused, and nothing changes.
        page.open("/groups")
        page.fill({"name": "tampered"})
        driver.execute_script(
            "document.querySelector(\"form[action='/groups/create'] input[name=csrf]\")"
            ".value = 'x';"
        )
        page.submit("form[action='/groups/create'] button")
        assert "security token" in page.text()
        page.shot("csrf-refused")
        page.open("/groups")
        assert "tampered" not in page.text()

        # A bad session cookie: back to the sign-in form.
        driver.delete_all_cookies()
        driver.add_cookie({"name": "pyhbb_session", "value": "forged", "path": "/"})
        page.open("/users")
        assert "/login" in driver.current_url

        # A plain user: no admin menu, and admin pages refused by URL.
        page.sign_in("erin", "erin-pass")
        assert "Server" not in page.find("header").text
        for path in ("/users", "/server", "/groups", "/user?name=admin"):
            page.open(path)
            assert "administrators only" in page.text(), path
        page.shot("forbidden")


def _decode_qr(png: bytes) -> str:
    import zxingcpp
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    found = zxingcpp.read_barcodes(image)
    assert found, "no QR code found in the screenshot"
    return str(found[0].text)


def test_a_device_goes_offline_without_a_reload(tmp_path: Path) -> None:
    """hbbs counts a UDP registration as online for 30 s after the last heartbeat; the
    open page follows it, polling only for the IDs it shows."""
    servers = ThreadedStack(tmp_path)
    with servers as stack, chrome() as driver:
        servers.run(stack.api.add_user("admin", admin=True))
        page = Page(driver, stack.api.url)
        page.sign_in("admin")
        peer = servers.run(UdpPeer.open(stack.hbbs.udp, "127.0.0.2"))
        servers.run(peer.register("fading01", uuid=b"fading-machine"))
        page.open("/devices")
        driver.execute_script("window.__notReloaded = true;")
        dot = page.find('[data-online-id="fading01"]')
        wait_for("online", lambda: "on" in dot.get_attribute("class").split())
        page.shot("device-online")
        # No more heartbeats: offline once the registration expires (30 s, hbbs's rule).
        wait_for("offline", lambda: "off" in dot.get_attribute("class").split(), timeout=60)
        assert dot.get_attribute("aria-label") == "offline"
        assert driver.execute_script("return window.__notReloaded === true;")
        page.shot("device-offline")
        peer.close()
