"""The Dagster UI as analysts use it: the real webserver on loopback, opened in headless Chromium
(Debian's chromium and chromedriver, installed by the test command), finds shaper's assets in the
asset graph. With SHAPER_UI_SCREENSHOT=path it also saves the screenshot the README shows."""

from __future__ import annotations

import os
import shutil
import time

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def webserver(tmp_path):
    # The same webserver the control API's tests launch runs through, on a fresh instance.
    from shaper_pipelines_tests.api.conftest import DagsterWebserver, shaper_env

    server = DagsterWebserver(shaper_env(tmp_path / "shaper_home"), tmp_path)
    yield server.url
    server.stop()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Headless, and no background traffic: this machine's network is closed.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1600,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_the_asset_graph_shows_shapers_assets(webserver, browser):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{webserver}/locations/shaper_pipelines/asset-groups/forecast")  # the group's lineage graph
    # The graph draws only what is in view; these four are, at its initial zoom.
    wanted = ["demand_forecast", "scaling_plan", "forecast_accuracy", "utilisation_forecast"]
    try:
        WebDriverWait(browser, 90).until(lambda d: all(n in d.find_element("tag name", "body").text for n in wanted))
    except TimeoutException:
        pytest.fail(f"the lineage graph did not show {wanted}; the page says: "
                    f"{browser.find_element('tag name', 'body').text[:1500]!r}")
    # A fresh instance greets with a newsletter dialog; skip it as a user would.
    for button in browser.find_elements("xpath", "//button[normalize-space()='Skip']"):
        button.click()
    time.sleep(3)  # let the graph finish laying out before the picture
    shot = os.environ.get("SHAPER_UI_SCREENSHOT")
    if shot:
        browser.save_screenshot(shot)
    body = browser.find_element("tag name", "body").text
    assert all(name in body for name in wanted)
    browser.get(f"{webserver}/assets")  # the catalog, alphabetical: the first rows are in view
    WebDriverWait(browser, 60).until(lambda d: all(n in d.find_element("tag name", "body").text
                                                   for n in ("business_calendar", "capacity_model")))
