"""The operator console in a real browser: headless Chromium (Debian's, through its
chromedriver) opens `/console` on the running app, shows both shards, and finds a SKU through
the search box. The screenshot is kept in `artifacts/console.png` for people to look at.

Chromium is a system package: `.ci/run` installs it; elsewhere the test is skipped without it
(`make tools` installs it), but never in CI, where a skip would hide a broken console."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as until
from selenium.webdriver.support.ui import WebDriverWait

from tests.http.conftest import HttpApp, stock

pytestmark = pytest.mark.ray

ARTIFACTS_DIR = Path(os.environ.get("INVENTORY_ARTIFACTS_DIR", "artifacts"))
WAIT_SECONDS = 30.0
NO_FIGURE = "\u2013"  # what the console shows before it has two polls to compute a rate
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver must be installed in CI (see .ci/run)")
        pytest.skip("needs chromium and chromedriver (make tools installs them)")

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def test_console_shows_the_shards_and_finds_a_sku(
    browser: Any, http: httpx.Client, http_app: HttpApp
) -> None:
    sku = http_app.sku(prefix="CONSOLE")
    stock(http, http_app, sku, 42, location="hamburg")
    wait = WebDriverWait(browser, WAIT_SECONDS)
    # The key goes in the fragment, which the page moves to the tab's sessionStorage; it never
    # reaches the server in a URL.
    browser.get(f"{http_app.base_url}/console#key={http_app.reader_key}")

    rows = wait.until(
        lambda driver: (
            found
            if len(found := driver.find_elements(By.CSS_SELECTOR, "#shards tbody tr[data-shard]"))
            == 2
            else None
        )
    )
    assert [row.get_attribute("data-shard") for row in rows] == ["0", "1"]
    wait.until(lambda driver: "ready" in driver.find_element(By.ID, "shards").text)

    search = browser.find_element(By.ID, "sku-input")
    search.clear()
    search.send_keys(sku)
    browser.find_element(By.CSS_SELECTOR, "#sku-search button, #sku-search [type=submit]").click()
    wait.until(until.text_to_be_present_in_element((By.CSS_SELECTOR, "#sku-result .sku-id"), sku))
    result = browser.find_element(By.ID, "sku-result").text
    assert "hamburg" in result and "42" in result, result

    browser.find_element(By.ID, "sku-input").clear()
    browser.find_element(By.ID, "sku-input").send_keys(f"{sku}-NONE")
    browser.find_element(By.CSS_SELECTOR, "#sku-search button, #sku-search [type=submit]").click()
    wait.until(until.text_to_be_present_in_element((By.ID, "sku-result"), "not found"))

    browser.find_element(By.ID, "sku-input").clear()
    browser.find_element(By.ID, "sku-input").send_keys(sku)
    browser.find_element(By.CSS_SELECTOR, "#sku-search button, #sku-search [type=submit]").click()
    wait.until(until.text_to_be_present_in_element((By.CSS_SELECTOR, "#sku-result .sku-id"), sku))
    # A second poll of the shards has given ops/s a figure (the first shows an en dash).
    wait.until(
        lambda driver: (
            driver.find_element(By.CSS_SELECTOR, '#shards tr[data-shard="0"]').text.split()[4]
            != NO_FIGURE
        )
    )
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS_DIR / "console.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"console screenshot: {screenshot.resolve()}")
