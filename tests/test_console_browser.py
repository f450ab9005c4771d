"""The admin console in a real browser: Debian's chromium, driven through its chromedriver.

One gateway (with the console on) and one simulator serve the whole module from a thread of
their own (the WebDriver calls block), and one headless chromium walks it. Without chromium
and chromedriver the module is skipped, except where ``GATEWAY_REQUIRE_BROWSER=1`` (CI sets
it): there a missing browser fails. With ``GATEWAY_SCREENSHOTS_DIR`` set, the walk saves the
screenshots of docs/console.md there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiohttp.test_utils import TestServer

from gateway.web.app import create_app
from tests.conftest import ADMIN_TOKEN, NANO, SIM_TOKEN, make_settings, start_simulator

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow
T = TypeVar("T")
UI = "/admin/ui"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--disable-dev-shm-usage",
)


def _browser_or_skip() -> tuple[str, str]:
    if CHROMIUM and CHROMEDRIVER:
        return CHROMIUM, CHROMEDRIVER
    reason = "the console's browser tests need Debian's chromium and chromium-driver"
    if os.environ.get("GATEWAY_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (GATEWAY_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


class Served:
    """A gateway with the console on, and the simulator, served from their own thread."""

    def __init__(self, redis_url: str, namespace: str, tmp: Path) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._servers: list[TestServer] = []
        self.url = self.run(self._start(redis_url, namespace, tmp))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    async def _start(self, redis_url: str, namespace: str, tmp: Path) -> str:
        simulator = await start_simulator()
        self._servers.append(simulator)
        upstream = str(simulator.make_url("")).rstrip("/")
        settings = make_settings(redis_url, namespace, upstream, tmp, console=True)
        server = TestServer(create_app(settings), host="127.0.0.1")
        await server.start_server()
        self._servers.append(server)
        return str(server.make_url("")).rstrip("/")

    async def _stop(self) -> None:
        for server in reversed(self._servers):
            await server.close()

    def close(self) -> None:
        self.run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def api(self, method: str, path: str, token: str = ADMIN_TOKEN, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)


@pytest.fixture(scope="module")
def served(single_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    _browser_or_skip()
    namespace = "tbrowser" + os.urandom(4).hex()
    gateway = Served(single_redis_url, namespace, tmp_path_factory.mktemp("console"))
    yield gateway
    gateway.close()


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    chromium, chromedriver = _browser_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    options.add_argument("--window-size=1280,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    browser.implicitly_wait(0)
    yield browser
    browser.quit()


class Page:
    """The console as a person uses it: by labels, buttons and what the page says."""

    def __init__(self, driver: WebDriver, served: Served) -> None:
        self.driver = driver
        self.served = served

    def open(self, path: str) -> None:
        self.driver.get(self.served.url + path)

    def wait(self, condition: Callable[[WebDriver], Any], what: str) -> Any:
        try:
            # a page swapped in by htmx or loaded anew leaves stale elements behind
            stale = (StaleElementReferenceException, AssertionError)
            return WebDriverWait(self.driver, 10, ignored_exceptions=stale).until(condition)
        except TimeoutException:
            raise AssertionError(f"waited for {what}; the page says:\n{self.text()}") from None

    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def wait_text(self, text: str) -> None:
        self.wait(lambda d: text in self.text(), repr(text))

    def field(self, label: str) -> WebElement:
        """The input a label names (as assistive technology finds it)."""
        for element in self.driver.find_elements(By.TAG_NAME, "label"):
            if element.text.strip() == label:
                return self.driver.find_element(By.ID, element.get_attribute("for") or "")
        raise AssertionError(f"no field labelled {label!r}")

    def fill(self, label: str, value: str) -> None:
        element = self.field(label)
        element.clear()
        element.send_keys(value)

    def button(self, text: str, within: WebElement | None = None) -> WebElement:
        root = within or self.driver
        for element in root.find_elements(By.TAG_NAME, "button"):
            if element.text.strip() == text:
                return element
        raise AssertionError(f"no button {text!r}")

    def click(self, text: str, within: WebElement | None = None) -> None:
        self.button(text, within).click()

    def has_button(self, text: str) -> bool:
        return any(b.text.strip() == text for b in self.driver.find_elements(By.TAG_NAME, "button"))

    def sign_in(self, token: str) -> None:
        self.open(f"{UI}/teams")
        self.wait_text("Sign in")
        self.fill("Admin token", token)
        self.click("Sign in")
        self.wait(lambda d: "/admin/ui/teams" in d.current_url and "Teams" in self.text(), "teams")

    def sign_out(self) -> None:
        self.click("Sign out")
        self.wait_text("Signed out.")

    def mark(self) -> None:
        """A marker that lives as long as this document: gone after a full page load."""
        self.driver.execute_script("window.consoleTestMarker = 1")

    def marked(self) -> bool:
        return bool(self.driver.execute_script("return window.consoleTestMarker === 1"))

    def csp_violations(self) -> list[str]:
        return [
            str(entry["message"])
            for entry in self.driver.get_log("browser")  # type: ignore[no-untyped-call]
            if "Content Security Policy" in str(entry["message"])
        ]

    def screenshot(self, name: str, width: int = 1280) -> None:
        directory = os.environ.get("GATEWAY_SCREENSHOTS_DIR")
        if not directory:
            return
        self.driver.set_window_size(width, 900)
        # the window is taller than the page's viewport by the browser's own chrome
        chrome = 900 - int(self.driver.execute_script("return window.innerHeight"))
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(width, min(int(height) + chrome, 2400))
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(Path(directory) / f"{name}.png"))
        self.driver.set_window_size(1280, 900)


@pytest.fixture
def page(driver: WebDriver, served: Served) -> Iterator[Page]:
    driver.delete_all_cookies()
    yield Page(driver, served)
    driver.delete_all_cookies()


def submit(served: Served, key: str, prompt: str) -> httpx.Response:
    return httpx.post(
        f"{served.url}/v1/models/{NANO}",
        headers={"Authorization": f"Bearer {key}"},
        json={"prompt": prompt},
        timeout=30,
    )


def wait_finished(served: Served, key: str, request_id: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = httpx.get(
            f"{served.url}/v1/requests/{request_id}/status",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ).json()
        if status["status"] in ("completed", "succeeded", "failed", "cancelled"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{request_id} did not finish: {status}")


def test_an_admins_day_from_sign_in_to_the_audit_log(page: Page, served: Served) -> None:
    page.sign_in(ADMIN_TOKEN)
    page.screenshot("teams-empty")
    page.mark()

    page.fill("Team id", "design")
    page.fill("Name", "Design")
    page.click("Create team")
    page.wait_text("Team design")
    assert page.driver.current_url.endswith(f"{UI}/teams/design")
    assert page.marked(), "the change reloaded the whole page"

    page.fill("Name", "laptop")
    page.fill("Expires in (days)", "30")
    page.click("Create key")
    page.wait_text("copy it now")
    key = page.driver.find_element(By.ID, "new-key").text
    assert key.startswith("rcg_")
    page.click("Copy")
    page.wait(lambda d: page.button("Copied").is_displayed(), "the copy button to say Copied")
    page.screenshot("team-new-key")
    first = submit(served, key, "a lighthouse at dawn")
    assert first.status_code == 200, first.text
    wait_finished(served, key, first.json()["request_id"])

    page.open(f"{UI}/teams/design/limits")
    page.fill("Submits per minute", "lots")
    page.click("Save limits")
    page.wait_text("Input should be a valid number")
    page.screenshot("limits-refused")
    page.fill("Submits per minute", "")
    page.fill("Budget (USD per period)", "0.01")
    page.click("Save limits")
    page.wait_text("Limits saved")
    refused = submit(served, key, "a second, different lighthouse")
    assert refused.status_code == 402, refused.text

    page.open(f"{UI}/teams/design/usage")
    by_day = page.driver.find_element(By.ID, "by-day").text
    assert "budget 1" in by_day
    usage = served.api("GET", "/admin/v1/teams/design/usage").json()
    budget = usage["budget"]
    assert f"${budget['settled_usd']} settled" in page.text()
    assert usage["totals"]["refused"] == 1
    assert page.driver.find_elements(By.CSS_SELECTOR, "#chart-spend rect.bar")
    page.screenshot("usage")

    page.open(f"{UI}/teams/design")
    key_id = served.api("GET", "/admin/v1/teams/design/keys").json()["keys"][0]["key_id"]
    row = page.driver.find_element(By.ID, f"key-{key_id}")
    grace = row.find_element(By.NAME, "grace_hours")
    grace.clear()
    grace.send_keys("1")
    page.click("Rotate", row)
    page.wait_text("rotated")
    new_key = page.driver.find_element(By.ID, "new-key").text
    assert new_key != key and new_key.startswith("rcg_")
    assert "in grace" in page.driver.find_element(By.ID, f"key-{key_id}").text
    page.click("Revoke", page.driver.find_element(By.ID, f"key-{key_id}"))
    page.wait_text(f"Key {key_id} revoked.")
    assert submit(served, key, "after the revocation").status_code == 401
    assert key not in page.driver.page_source

    page.open(f"{UI}/audit")
    page.fill("Team", "design")
    page.click("Filter")
    page.wait(lambda d: "team=design" in d.current_url, "the filtered audit log")
    audit = page.driver.find_element(By.ID, "audit").text
    for action in ("team.create", "key.create", "limits.replace", "key.rotate", "key.revoke"):
        assert action in audit, action
    assert "bootstrap" in audit
    page.screenshot("audit")
    page.open(f"{UI}/teams/design")
    page.screenshot("team-phone", width=390)
    page.open(f"{UI}/teams")
    page.screenshot("teams")
    page.open(f"{UI}/pricing")
    page.fill("Model id", NANO)
    page.click("Estimate")
    page.wait(lambda d: d.find_elements(By.ID, "estimate-result"), "the estimate")
    page.fill("Model to show or edit", NANO)
    page.click("Edit")
    page.wait_text(f"Price of {NANO}")
    page.fill(
        "Override (JSON)", '{"rules": [{"param": "resolution", "equals": "8K", "multiplier": 2}]}'
    )
    page.click("Save override")
    page.wait_text("'8K' is not")
    page.screenshot("pricing-refused")
    assert page.csp_violations() == []
    assert key not in page.driver.page_source and SIM_TOKEN not in page.driver.page_source


def test_a_teams_dedup_mode_and_a_keys_limit_set_in_the_browser_are_the_apis(
    page: Page, served: Served
) -> None:
    served.api("POST", "/admin/v1/teams", json={"team_id": "tuned"})
    key = served.api("POST", "/admin/v1/teams/tuned/keys", json={"name": "ci"}).json()
    page.sign_in(ADMIN_TOKEN)
    page.open(f"{UI}/teams/tuned/cache")
    page.mark()
    Select(page.field("Team default")).select_by_visible_text("seeded")
    Select(page.field(f"{key['key_id']} (ci)")).select_by_visible_text("off")
    page.click("Save dedup policy")
    page.wait_text("Dedup policy saved")
    assert page.marked(), "the change reloaded the whole page"
    policy = served.api("GET", "/admin/v1/teams/tuned/dedup-policy").json()
    assert policy == {"default": "seeded", "keys": {key["key_id"]: "off"}, "models": {}}
    page.screenshot("dedup")

    page.open(f"{UI}/teams/tuned/limits")
    row = page.driver.find_element(By.ID, f"key-limits-{key['key_id']}")
    row.find_element(By.LINK_TEXT, "Edit limits").click()
    page.wait_text(f"Limits of key {key['key_id']}")
    page.fill("Submits per day", "-1")
    page.click("Save key limits")
    page.wait_text("greater than or equal to 0")
    page.fill("Submits per day", "0")
    page.click("Save key limits")
    page.wait_text(f"Limits of key {key['key_id']} saved.")
    limits = served.api("GET", "/admin/v1/teams/tuned/limits").json()
    assert limits["keys"] == {key["key_id"]: {**limits["keys"][key["key_id"]], "daily_requests": 0}}
    assert submit(served, key["key"], "over the key's day").status_code == 429
    page.screenshot("key-limits")
    assert page.csp_violations() == []


def test_a_viewer_sees_no_write_controls_and_a_forged_form_is_refused(
    page: Page, served: Served
) -> None:
    served.api("POST", "/admin/v1/teams", json={"team_id": "viewed"})
    served.api("POST", "/admin/v1/teams/viewed/keys", json={"name": "ci"})
    viewer = served.api("POST", "/admin/v1/admins", json={"name": "auditor", "role": "viewer"})
    page.sign_in(viewer.json()["token"])
    for path in (
        "/teams",
        "/teams/viewed",
        "/teams/viewed/limits",
        "/admins",
        "/teams/viewed/cache",
    ):
        page.open(UI + path)
        buttons = [b.text for b in page.driver.find_elements(By.TAG_NAME, "button")]
        assert buttons == ["Sign out"], (path, buttons)
    page.open(f"{UI}/teams/viewed/limits")
    assert page.field("Budget (USD per period)").get_attribute("readonly") is not None
    page.screenshot("limits-viewer")
    csrf = page.driver.find_element(By.CSS_SELECTOR, 'meta[name="csrf-token"]')
    page.driver.execute_script(
        """
        const form = document.createElement('form');
        form.method = 'post'; form.action = '/admin/ui/teams';
        for (const [name, value] of [['csrf_token', arguments[0]], ['team_id', 'forged']]) {
          const input = document.createElement('input');
          input.type = 'hidden'; input.name = name; input.value = value; form.appendChild(input);
        }
        document.body.appendChild(form); form.submit();
        """,
        csrf.get_attribute("content"),
    )
    page.wait_text("A viewer may not change anything.")
    assert served.api("GET", "/admin/v1/teams/forged").status_code == 404


def test_a_post_without_the_csrf_token_is_refused(page: Page, served: Served) -> None:
    page.sign_in(ADMIN_TOKEN)
    # the token goes in a hidden field and, from htmx, in a header read from a meta tag
    page.driver.execute_script(
        "document.querySelector('#create-team input[name=csrf_token]').remove();"
        "document.querySelector('meta[name=csrf-token]').remove();"
    )
    page.fill("Team id", "nocsrf")
    page.click("Create team")
    page.wait_text("The form is out of date")
    assert served.api("GET", "/admin/v1/teams/nocsrf").status_code == 404


def test_a_revoked_admins_session_ends(page: Page, served: Served) -> None:
    alice = served.api("POST", "/admin/v1/admins", json={"name": "alice", "role": "admin"}).json()
    page.sign_in(alice["token"])
    assert "alice" in page.driver.find_element(By.ID, "signed-in-as").text
    served.api("DELETE", f"/admin/v1/admins/{alice['token_id']}")
    page.driver.find_element(By.LINK_TEXT, "Audit log").click()
    page.wait_text("Your session ended")
    page.fill("Admin token", alice["token"])
    page.click("Sign in")
    page.wait_text("The admin token has been revoked.")
