"""A real headless browser for the dashboard tests: Debian's ``chromium`` driven through ``chromedriver`` (Selenium).

Nothing is downloaded: Selenium is pointed at the system binaries, so its driver manager never runs. Basic auth
goes in as an extra header on every request through the DevTools protocol (``Network.setExtraHTTPHeaders``),
which covers page loads, form posts and the Live page's ``fetch`` alike; credentials in the URL would not.

The browser's console is read back (``console_errors``) so a test can insist a page logs no errors, and
``screenshot`` saves a full-page PNG under the test artefacts folder (``TEST_ARTIFACTS``, default
``var/test-artifacts``).
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def artifacts_dir(*parts: str) -> Path:
    base = Path(os.environ.get("TEST_ARTIFACTS") or ROOT / "var" / "test-artifacts")
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_binaries() -> tuple[str | None, str | None]:
    """(chromium, chromedriver) from ``CHROME_BIN`` / ``CHROMEDRIVER`` or the PATH."""
    chrome = os.environ.get("CHROME_BIN") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    return chrome, driver


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (requirements-dev.txt)"
    chrome, driver = find_binaries()
    if not chrome or not driver:
        return "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    return None


class Browser:
    def __init__(self, user: str, password: str, width: int = 1280, height: int = 900) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        chrome, driver = find_binaries()
        options = webdriver.ChromeOptions()
        options.binary_location = chrome
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    f"--window-size={width},{height}", "--disable-extensions", "--no-first-run"):  # fmt: skip
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.width = width
        self.driver = webdriver.Chrome(service=Service(driver), options=options)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
        self._seen_errors: list[dict] = []

    def open(self, url: str) -> None:
        self.driver.get(url)

    def css(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def console_errors(self) -> list[dict]:
        """Console entries at SEVERE level since the last call (page errors, failed loads, CSP violations)."""
        return [entry for entry in self.driver.get_log("browser") if entry.get("level") == "SEVERE"]

    def screenshot(self, name: str) -> Path:
        """A full-page PNG: the window is stretched to the page's height for the shot, then restored."""
        height = int(self.js("return Math.ceil(document.documentElement.scrollHeight)"))
        size = self.driver.get_window_size()
        self.driver.set_window_size(self.width, max(400, min(height + 40, 6000)))
        path = artifacts_dir("dashboard") / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(size["width"], size["height"])
        return path

    def close(self) -> None:
        self.driver.quit()
