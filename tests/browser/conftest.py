"""One real headless Chromium (Debian's chromium + chromedriver, driven by Selenium) per test session, and the
console served by uvicorn on loopback for each test."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from secops.console.app import create_app
from tests.support.console import ARTIFACTS, ConsoleServer, add_users

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise RuntimeError(f"{path} missing: install Debian's chromium and chromium-driver (.ci/apt-packages.txt)")
    profile = Path(tempfile.mkdtemp(prefix="secops-chromium-"))
    downloads = profile / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", f"--user-data-dir={profile / 'profile'}"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads),
                                                           "eventsEnabled": True})
    driver.set_page_load_timeout(60)
    driver.downloads = downloads
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def console_url(settings, es):
    """The console on a free loopback port, one account per role (see tests.support.console)."""
    app = create_app(settings, es)
    add_users(es, settings.elasticsearch.index_prefix)
    with ConsoleServer(app) as server:
        yield server.url
