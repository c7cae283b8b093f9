"""The search page end to end in headless Chromium (Debian's chromium + chromium-driver): type a
query, see hits with rendered previews, open a moment view with the P_start / P_end curves,
search by uploading a clip. TRIMO_SCREENSHOTS=DIR saves the screenshots the README shows."""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fixtures.mocap_builders import walking_bvh
from fixtures.synthetic_motion import synthetic_clip

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture
def browser():
    driver_path, chromium = shutil.which("chromedriver"), shutil.which("chromium")
    if not (driver_path and chromium):
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium "
                    "chromium-driver; launch/test.sh does it where it can)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1300",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def _serve(app) -> str:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(200):
        if server.started:
            return f"http://127.0.0.1:{port}"
        time.sleep(0.05)
    raise RuntimeError("the search page did not start")


def _wait(driver, condition, timeout=120.0):
    """Until `condition(driver)` holds; the page replaces its results, so stale elements retry."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def test_search_page_in_a_real_browser(models, browser, tmp_path):
    from selenium.webdriver.common.by import By

    from search.library import Searcher
    from search.web import create_app

    root = tmp_path / "mocap"
    root.mkdir()
    walking_bvh(root / "walk.bvh", n_frames=120, fps=30.0)
    np.save(root / "long_turn.npy", synthetic_clip(400, seed=3).astype(np.float32))
    searcher = Searcher(models["head"], progress=False)
    index, _ = searcher.build_index([root])
    url = _serve(create_app(searcher, index, tmp_path / "previews"))
    shots = Path(os.environ.get("TRIMO_SCREENSHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)

    browser.get(url)
    assert "2 motions" in browser.find_element(By.TAG_NAME, "h2").text
    browser.find_element(By.ID, "q").send_keys("a person turns while walking")
    browser.find_element(By.ID, "search").click()
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".hit")) == 2)
    expected = [h.id for h in searcher.search_text(index, "a person turns while walking", k=5)]
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".hit .id")] == expected
    # the previews are real videos the browser decodes (the project's renderer, cached on disk)
    _wait(browser, lambda d: all(d.execute_script("return arguments[0].readyState >= 2 && "
                                                  "arguments[0].videoWidth == 192", v)
                                 for v in d.find_elements(By.CSS_SELECTOR, "video.preview")))
    assert len(list((tmp_path / "previews").glob("*.mp4"))) == 2
    browser.save_screenshot(str(shots / "search_results.png"))

    # the moment view: P_start and P_end along the timeline and the predicted span
    position = expected.index("long_turn")
    browser.find_elements(By.CSS_SELECTOR, ".moments-btn")[position].click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline polyline.curve"))
    curves = browser.find_elements(By.CSS_SELECTOR, "#timeline polyline.curve")
    [best] = searcher.moments(index, "a person turns while walking", k=1, motion_id="long_turn")
    assert len(curves) == 2 and len(curves[0].get_attribute("points").split()) == len(best.p_start)
    assert f"{best.start_s:.1f}-{best.end_s:.1f} s" in browser.find_element(By.ID, "moments").text
    span = browser.find_element(By.CSS_SELECTOR, "#timeline rect.span")
    assert float(span.get_attribute("x")) == pytest.approx(best.start_s / best.duration_s * 800, abs=0.01)
    _wait(browser, lambda d: d.execute_script("return arguments[0].readyState >= 2",
                                              d.find_element(By.CSS_SELECTOR, "video.moment-preview")))
    browser.save_screenshot(str(shots / "search_moments.png"))

    # search by uploading a clip: the clip itself comes first
    browser.find_element(By.ID, "clip").send_keys(str(root / "walk.bvh"))
    browser.find_element(By.ID, "clip-search").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".hit .id")
          and d.find_elements(By.CSS_SELECTOR, ".hit .id")[0].text == "walk"
          and not d.find_elements(By.CSS_SELECTOR, ".moments-btn"))
    browser.save_screenshot(str(shots / "search_by_clip.png"))
    # a file of another kind is refused with a message
    (tmp_path / "notes.txt").write_text("hello")
    browser.find_element(By.ID, "clip").send_keys(str(tmp_path / "notes.txt"))
    browser.find_element(By.ID, "clip-search").click()
    _wait(browser, lambda d: "upload a .bvh or .npy clip" in d.find_element(By.ID, "status").text)
