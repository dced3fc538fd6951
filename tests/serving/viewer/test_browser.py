"""The physician's viewer in a real headless Chromium: OHIF under /viewer, reading the PACS (a real
Orthanc) only through the edge's proxy, shows the study list, the CT, and the screening's SEG with
its segments. Screenshots of each step go to the test artifacts for a person to look at."""

from __future__ import annotations

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.serving.browser import chromium_driver, console_messages, requested_urls, save_screenshot
from tests.serving.viewer.conftest import PREFIX

LOAD_S = 60  # swiftshader renders on the CPU: generous, the waits end as soon as the page is there
# share of the viewport's pixels that are bright (the phantom's body at OHIF's CT window) and
# green-dominant (the SEG's lung segment), and where the red-dominant lesion segment lies
CANVAS_STATS = """
const canvas = document.querySelector('canvas.cornerstone-canvas');
const context = canvas && canvas.width > 0 ? canvas.getContext('2d') : null;
if (!context) return null;
const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
let bright = 0, green = 0, red = 0, redX = 0, left = canvas.width, right = 0;
for (let i = 0; i < data.length; i += 4) {
  const [r, g, b] = [data[i], data[i + 1], data[i + 2]], x = (i / 4) % canvas.width;
  if (r > 200 && g > 200 && b > 200) { bright++; left = Math.min(left, x); right = Math.max(right, x); }
  if (g > r + 60 && g > b + 60) green++;
  if (r > g + 40 && r > b + 80) { red++; redX += x; }
}
const pixels = canvas.width * canvas.height;
return {bright: bright / pixels, green: green / pixels, red: red / pixels,
        lesionAcross: red ? (redX / red - left) / Math.max(1, right - left) : null};
"""


def _body_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def _canvas(driver, condition):
    stats = driver.execute_script(CANVAS_STATS)
    return stats if stats and condition(stats) else False


@pytest.fixture
def driver(viewer):
    with chromium_driver() as driver:
        yield driver


def test_physician_opens_the_study_and_its_segmentation(driver, viewer, study):
    # OHIF re-renders its panels while it loads: an element found a moment ago may be gone, so look again
    wait = WebDriverWait(driver, LOAD_S, ignored_exceptions=(StaleElementReferenceException,))
    viewer.app.paths.clear()
    driver.get(f"{viewer.url}{PREFIX}/")
    wait.until(lambda d: "ACC-VIEW-1" in _body_text(d))
    save_screenshot(driver, "viewer-1-study-list")
    assert "Viewer, Phantom" in _body_text(driver) and "CT chest (viewer test)" in _body_text(driver)
    source = driver.execute_script("return window.config.dataSources[0].configuration")
    assert source["qidoRoot"] == source["wadoRoot"] == f"{viewer.url}{PREFIX}/dicom-web"
    assert driver.execute_script("return window.crossOriginIsolated") is True  # SharedArrayBuffer for OHIF's decoders

    driver.get(f"{viewer.url}{PREFIX}/viewer?StudyInstanceUIDs={study.study_uid}")
    shown = wait.until(lambda d: _canvas(d, lambda s: s["bright"] > 0.1))
    save_screenshot(driver, "viewer-2-ct")
    assert shown["green"] == 0  # nothing drawn over the CT yet
    seg = wait.until(lambda d: [t for t in d.find_elements(By.CSS_SELECTOR, "[data-cy=study-browser-thumbnail-no-image]")
                                if "SEG" in t.text and study.seg_description in t.text])
    assert any("Chest phantom" in t.text for t in driver.find_elements(By.CSS_SELECTOR, "[data-cy=study-browser-thumbnail]"))

    ActionChains(driver).double_click(seg[0]).perform()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-cy=yes-hydrate-btn]"))
    save_screenshot(driver, "viewer-3-open-segmentation-prompt")
    assert "Do you want to open this Segmentation?" in _body_text(driver)
    driver.find_element(By.CSS_SELECTOR, "[data-cy=yes-hydrate-btn]").click()
    drawn = wait.until(lambda d: _canvas(d, lambda s: s["green"] > 0.05 and s["red"] > 0))
    # the lesion was planted in the patient's right lung, which a viewer shows on the image's left
    assert drawn["lesionAcross"] < 0.5, drawn

    driver.find_element(By.CSS_SELECTOR, "[data-cy=panelSegmentation-btn]").click()
    segments = wait.until(lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "[data-cy=data-row-title]") if e.text])
    save_screenshot(driver, "viewer-4-segmentation")
    assert study.lesion_label in segments and "Lung" in segments

    elsewhere = [url for url in requested_urls(driver) if url.split(":")[0] in ("http", "https", "ws", "wss")
                 and not url.startswith(f"{viewer.url}{PREFIX}/")]
    assert elsewhere == []  # no other host (no internet here: the service worker stays off) and nothing outside the prefix
    assert [path for path in viewer.app.paths if not path.startswith(f"{PREFIX}/") and path != PREFIX] == []
    errors = [m["message"] for m in console_messages(driver) if m["level"] == "SEVERE"]
    assert errors == []
