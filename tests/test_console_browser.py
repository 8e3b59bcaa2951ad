"""The console in a real browser (Debian's chromium driven by Playwright).

An operator signs in, creates a team and a key, sees the secret once, uses
it through the ``openai`` SDK against a real gateway process, and finds the
request in the request log, on the dashboard and in the live view.
Screenshots of the main pages are kept in ``var/screenshots/``.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from keys.models import VirtualKey
from tests.console_helpers import PASSWORD, persona
from tests.processes import ROOT

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "var" / "screenshots"
WAIT_MS = 20_000


def off_the_loop(function, *args):
    """Run a database call outside Playwright's event loop (Django refuses it inside)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()


@pytest.fixture
def operator(transactional_db):
    return persona("operator", superuser=True, password=PASSWORD)


@pytest.fixture
def browser_page():
    # No skip: a machine without the browser fails this test (CI installs it).
    assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install -y chromium"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.set_default_timeout(WAIT_MS)
        yield page, errors
        context.close()
        browser.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def chat(demo, secret: str) -> str:
    """One chat completion through the SDK; returns the gateway's request id."""
    raw = demo.openai(secret).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello from the browser"}]
    )
    assert raw.parse().choices[0].message.content
    return raw.headers["x-gateway-request-id"]


def reload_until_visible(page: Page, text: str, timeout: float = 20.0) -> None:
    """Records reach the log a flush later: reload until ``text`` shows."""
    deadline = time.monotonic() + timeout
    while page.get_by_text(text).count() == 0:
        assert time.monotonic() < deadline, f"{text} never appeared on {page.url}"
        time.sleep(0.3)
        page.reload()


def test_an_operator_creates_a_key_in_the_console_and_finds_its_request(
    demo, celery_worker, operator, browser_page
):
    page, errors = browser_page
    base = demo.gateway.url

    page.goto(f"{base}/")
    expect(page).to_have_url(re.compile(r"/console/login/"))
    shot(page, "sign-in")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Teams").click()
    page.get_by_role("link", name="Add").click()
    page.get_by_label("Name").fill("browser-team")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name="Team browser-team")).to_be_visible()
    page.goto(f"{base}/console/teams/")
    expect(page.get_by_role("link", name="browser-team")).to_be_visible()
    shot(page, "teams")

    page.goto(f"{base}/console/keys/new")
    page.get_by_label("Name").fill("browser-key")
    page.get_by_label("Team").select_option(label="browser-team")
    page.get_by_label("Allowed models").fill("gpt-4o-mini")
    page.get_by_role("button", name="Create").click()
    secret_field = page.get_by_role("textbox", name="Secret of browser-key")
    expect(secret_field).to_be_visible()
    secret = secret_field.input_value()
    assert secret.startswith("sk-gw-")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    shot(page, "key-secret")

    page.get_by_role("link", name="Go to the key").click()
    expect(page.get_by_role("heading", name="Virtual key browser-key")).to_be_visible()
    assert secret not in page.content()
    page.goto(f"{base}/console/keys/")
    assert secret not in page.content()
    shot(page, "keys")

    page.goto(f"{base}/console/budgets/new")
    page.get_by_label("Applies to").select_option(label="team browser-team")
    page.get_by_label("Amount").fill("5")
    page.get_by_label("Period").select_option(label="per day")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name=re.compile("Budget team browser-team"))).to_be_visible()

    page.goto(f"{base}/console/live/")
    expect(page.get_by_text("Connected")).to_be_visible()

    off_the_loop(demo.sync)
    request_id = chat(demo, secret)

    # The live view shows it as soon as the ledger writes it.
    expect(page.get_by_role("link", name=request_id)).to_be_visible()
    shot(page, "live")

    page.goto(f"{base}/console/requests/")
    page.get_by_label("Team").select_option(label="browser-team")
    page.get_by_role("button", name="Apply").click()
    reload_until_visible(page, request_id)
    shot(page, "request-log")
    page.get_by_role("link", name=request_id).click()
    expect(page.get_by_role("heading", name=f"Request {request_id}")).to_be_visible()
    expect(page.get_by_text("browser-key")).to_be_visible()
    expect(page.get_by_text("gpt-4o-mini").first).to_be_visible()
    shot(page, "request-detail")

    page.goto(f"{base}/console/?team={demo_team_id(page, base)}")
    expect(page.get_by_role("link", name=request_id)).to_be_visible()
    expect(page.locator("#total-requests")).to_have_text("1")
    expect(page.get_by_label(re.compile("team browser-team: 0 of 5 spent per day"))).to_be_visible()
    # Chart.js drew into every canvas.
    drawn = page.evaluate(
        "Array.from(document.querySelectorAll('canvas')).map(c => !!Chart.getChart(c))"
    )
    assert drawn == [True] * 5
    shot(page, "dashboard")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    shot(page, "dashboard-phone")

    assert errors == []


def demo_team_id(page: Page, base: str) -> str:
    """The id of browser-team, read from the dashboard's own filter."""
    page.goto(f"{base}/console/")
    option = page.locator("#id_team option", has_text="browser-team")
    return option.get_attribute("value") or ""


def test_an_admin_opts_one_key_in_to_message_content_in_the_console(
    demo, celery_worker, operator, browser_page
):
    """Create a key that keeps content in a team that does not, see its request's content,
    then set it back to the team's choice: the page says what the key does and why."""
    page, errors = browser_page
    base = demo.gateway.url
    page.goto(f"{base}/console/login/")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    page.goto(f"{base}/console/keys/new")
    page.get_by_label("Name").fill("debug-key")
    page.get_by_label("Team").select_option(label="platform")
    choice = page.get_by_label("Store message content")
    expect(choice).to_have_value("inherit")  # the default
    choice.select_option(label="Keep")
    page.get_by_role("button", name="Create").click()
    secret = page.get_by_role("textbox", name="Secret of debug-key").input_value()
    page.get_by_role("link", name="Go to the key").click()
    expect(page.get_by_role("heading", name="Virtual key debug-key")).to_be_visible()
    expect(page.locator("#key-content")).to_have_text(
        "Message content: on (this key; the team's is off)."
    )
    expect(page.get_by_label("Store message content")).to_have_value("on")
    shot(page, "key-content-on")

    off_the_loop(demo.sync)
    request_id = chat(demo, secret)
    page.goto(f"{base}/console/requests/")
    reload_until_visible(page, request_id)
    page.get_by_role("link", name=request_id).click()
    content = page.get_by_role("region", name="Message content")
    expect(content).to_contain_text("Hello from the browser")
    shot(page, "request-content-kept-by-key")

    page.goto(f"{base}/console/keys/")
    page.get_by_role("link", name="debug-key").click()
    page.get_by_label("Store message content").select_option(label="As the team")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("debug-key saved.")).to_be_visible()
    expect(page.locator("#key-content")).to_have_text("Message content: inherits: off (team).")
    expect(page.get_by_label("Store message content")).to_have_value("inherit")
    key = off_the_loop(lambda: VirtualKey.objects.get(name="debug-key"))
    assert key.store_content == "inherit"

    assert errors == []
