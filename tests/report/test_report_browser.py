"""The report in a real browser: headless Chromium opens it from disk, every image decodes, no console error.

`make test` installs the Debian packages `chromium` and `chromium-driver` when they are missing and the
machine allows it; this test skips, saying why, only where they are not installed (under `CI=true` it fails).
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

from harmony.workflows.run import write_report
from tests.conftest import ROOT
from tests.report.conftest import EVIL_CASE, PNG_MAGIC

#: A stable copy of the screenshot, for looking at the design (reports/ is git-ignored).
SCREENSHOT_COPY = ROOT / "reports" / "browser_test" / "report.png"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1000")


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    chromium = _binary("chromium", "chromium-browser", "google-chrome")
    driver_path = _binary("chromedriver")
    if chromium is None or driver_path is None:
        (pytest.fail if os.environ.get("CI", "").lower() in ("true", "1") else pytest.skip)("Chromium and chromedriver are not installed and could not be installed on this machine "
                    "(`make test` runs `apt-get install -y chromium chromium-driver` when it is root or has sudo)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: selenium never goes looking for (or downloading) a driver
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.mark.slow
def test_report_renders_in_chromium(browser, synthetic_run, tmp_path):
    run_dir = synthetic_run(tmp_path / "run")
    page = write_report(run_dir)
    browser.get(page.resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.title.startswith("harmony report")
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]);")
    assert len(images) == 6
    for alt, complete, width, height in images:
        assert complete and width > 0 and height > 0, f"image {alt!r} did not decode"
    # the hostile case id is text on the page, never a script that ran
    assert EVIL_CASE in browser.find_element("id", "failures").text
    assert browser.execute_script("return document.scripts.length") == 0
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors
    # full-page screenshot through the DevTools protocol
    metrics = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    png = base64.b64decode(shot["data"])
    assert png.startswith(PNG_MAGIC)
    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(png)
    SCREENSHOT_COPY.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, SCREENSHOT_COPY)
