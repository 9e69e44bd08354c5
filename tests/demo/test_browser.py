"""`rest-hf demo` in a real browser: headless Chromium uploads a real scene, runs a prediction with a tiny preset,
checks the overlay, the legend and the downloaded GeoTIFF, then a corrupt upload's one-line message.

One app start, one prediction, bounded waits. Set REST_HF_DEMO_SCREENSHOT=docs/demo.png to keep the page's
screenshot (that is how the README's picture is made).
"""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

import pytest

from ..conftest import SAMPLE_DIR
from .browser import chromium, start_demo, stop

WAIT_S = 240  # upper bound of one wait in the page (the prediction on a loaded 2-core machine is the longest)


def _wait(driver, condition, what: str, timeout: float = WAIT_S):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(condition)
    except TimeoutException:
        status = driver.find_element("id", "status").text
        pytest.fail(f"timed out after {timeout} s waiting for {what}; status: {status!r}")


def _status(driver) -> str:
    return driver.find_element("id", "status").text.strip()


def _upload(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By

    field = _wait(
        driver, lambda d: d.find_element(By.CSS_SELECTOR, "#scene-upload input[type=file]"), "upload"
    )
    field.send_keys(str(path))


@pytest.mark.timeout(900)
def test_demo_predicts_in_a_real_browser(tmp_path):
    import rasterio
    from selenium.webdriver.common.by import By

    from rest_hf.demo import default_model_names
    from rest_hf.loading import load_config

    scene = SAMPLE_DIR / "RGB.byte.tif"
    corrupt = SAMPLE_DIR / "corrupt.tif"
    if not scene.exists() or not corrupt.exists():
        pytest.fail(f"the sample rasters are missing from {SAMPLE_DIR}")
    server_tmp = tmp_path / "server-tmp"
    process, url = start_demo(["--device", "cpu", "--no-hub-ids"], server_tmp, tmp_path / "demo.log")
    driver = None
    try:
        driver = chromium(tmp_path / "profile")
        driver.set_page_load_timeout(120)
        driver.get(url)
        _upload(driver, scene)
        _wait(driver, lambda d: "Press Segment" in _status(d), "the uploaded scene")
        assert "791 x 718 px, 3 bands, EPSG:32618" in _status(driver)
        assert "64 MB" in driver.find_element(By.TAG_NAME, "body").text  # the upload limit is stated

        driver.find_element(By.ID, "segment").click()
        _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#legend tr.legend-row"), "the legend")
        _wait(driver, lambda d: _status(d) == "Done: RGB.byte.tif segmented.", "the status line", timeout=30)
        rows = driver.find_elements(By.CSS_SELECTOR, "#legend tr.legend-row")
        config_classes = load_config(default_model_names()[0]).num_labels  # the page's default model
        assert len(rows) == config_classes
        shares = [float(r.find_elements(By.TAG_NAME, "td")[2].text.rstrip(" %")) for r in rows]
        assert abs(sum(shares) - 100.0) < 0.1 * len(rows)
        assert all(r.find_elements(By.TAG_NAME, "td")[3].text.endswith(("km²", "ha")) for r in rows)
        loaded = (
            "const i = document.querySelector('#overlay img'); return !!i && i.complete && i.naturalWidth"
        )
        _wait(driver, lambda d: d.execute_script(loaded), "the overlay picture", timeout=60)
        summary = driver.find_element(By.ID, "summary").text
        assert " s, peak memory " in summary and "MiB" in summary

        links = _wait(
            driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#labels-file a"), "the download link", 60
        )
        link = links[0].get_attribute("href")
        download = tmp_path / "labels.tif"
        with urllib.request.urlopen(link, timeout=60) as response:
            download.write_bytes(response.read())
        with rasterio.open(scene) as src, rasterio.open(download) as out:
            assert out.crs == src.crs and out.transform == src.transform
            assert (out.height, out.width) == (src.height, src.width)
            labels = out.read(1)
            assert labels[out.read_masks(1) > 0].max() < config_classes

        driver.save_screenshot(str(tmp_path / "demo.png"))
        shot = os.environ.get("REST_HF_DEMO_SCREENSHOT")
        if shot:  # 256 colours: a third of the size, no visible loss for a page
            from PIL import Image

            Image.open(tmp_path / "demo.png").convert("RGB").quantize(256).save(shot, optimize=True)

        sessions = next(server_tmp.glob("rest-hf-demo-*")) / "sessions"
        (first,) = list(sessions.iterdir())
        driver.get(url)  # a new session; the first one ends and its files go
        deadline = time.monotonic() + 60
        while first.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not first.exists(), "the closed session's temporary files were not removed"

        _upload(driver, corrupt)
        _wait(driver, lambda d: _status(d).startswith("Error:"), "the corrupt upload's message")
        message = _status(driver)
        assert "corrupt.tif" in message and "\n" not in message and "Traceback" not in message
        assert str(server_tmp) not in message  # the server's paths stay on the server
    finally:
        if driver is not None:
            driver.quit()
        stop(process)
    assert process.returncode is not None
    assert not list(server_tmp.glob("rest-hf-demo-*")), "the app left its temporary folder behind"
