"""Selenium helpers for the console's browser tests: sign in, wait, screenshots, downloads."""

from __future__ import annotations

import time
from pathlib import Path

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.console import ARTIFACTS, PASSWORD


def sign_in(driver: WebDriver, base: str, name: str, password: str = PASSWORD) -> None:
    driver.get(f"{base}/login")
    driver.delete_all_cookies()  # cookies ignore ports: forget the previous test's console
    driver.get(f"{base}/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    submit_and_wait(driver, driver.find_element(By.ID, "signin"))
    assert driver.find_element(By.ID, "whoami").text.startswith(name), driver.page_source[:500]


def submit_and_wait(driver: WebDriver, button, accept_confirm: bool = False) -> None:
    """Click a form button and wait for the next page."""
    html = driver.find_element(By.TAG_NAME, "html")
    button.click()
    if accept_confirm:
        WebDriverWait(driver, 10).until(ec.alert_is_present()).accept()
    WebDriverWait(driver, 30).until(replaced(html))


def replaced(element: WebElement):
    """Wait condition: ``element``'s page has been replaced. Like ``staleness_of``, and also when chromedriver
    answers mid-navigation that the node "does not belong to the document" (an inspector error it raises instead of
    a stale reference when the old document is being torn down; CI saw it once in 1,311 tests)."""
    def check(_driver: WebDriver) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False
    return check


def screenshot(driver: WebDriver, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def post_json(driver: WebDriver, path: str, body: dict) -> int:
    """POST JSON from the page with the session's CSRF token (as the page's own script could); the status."""
    return driver.execute_async_script("""
        const [path, body, done] = arguments;
        fetch('/api/me').then(r => r.json()).then(me => fetch(path, {method: 'POST',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf}, body: JSON.stringify(body)}))
          .then(r => done(r.status)).catch(e => done(String(e)));
    """, path, body)


def wait_download(folder: Path, suffix: str, timeout: float = 30) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if p.name.endswith(suffix)]
        if done and not any(p.name.endswith(".crdownload") for p in folder.iterdir()):
            return max(done, key=lambda p: p.stat().st_mtime)
        time.sleep(0.1)
    raise AssertionError(f"no {suffix} download in {folder}: {list(folder.iterdir())}")
