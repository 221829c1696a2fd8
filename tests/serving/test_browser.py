"""The web page in a real headless browser (Debian's chromium + chromedriver, driven by selenium): type a
title, see result cards with images, scores and agreeing / differing attributes; the duplicate review
page's empty state. Skipped with the reason when no browser is installed (.ci/run installs one)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from afmrl.catalog import read_catalog

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = next((p for p in (os.environ.get("AFMRL_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)  # fmt: skip
DRIVER = os.environ.get("AFMRL_CHROMEDRIVER") or shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver; .ci/run does)")  # fmt: skip
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_type_a_title_and_see_cards_with_agreeing_and_differing_attributes(browser, live_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, b, _ = live_server
    title = str(read_catalog(b.catalog).listings.iloc[0]["title"])
    browser.get(url + "/")
    WebDriverWait(browser, 30).until(lambda d: "afmrl_listings" in d.find_element(By.ID, "status").text)
    box = browser.find_element(By.ID, "text")
    box.clear()
    box.send_keys(title)
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#results .card")))
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    assert len(cards) == 10
    assert "score" in cards[0].text and cards[0].get_attribute("data-listing")
    agree = browser.find_elements(By.CSS_SELECTOR, "#results .attr.agree")
    differ = browser.find_elements(By.CSS_SELECTOR, "#results .attr.differ")
    assert agree and differ, "the page marks agreeing and differing attributes apart"
    assert agree[0].value_of_css_property("color") != differ[0].value_of_css_property("color")
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#results img')].some(i => i.complete && i.naturalWidth > 0)"))
    assert "candidates for" in browser.find_element(By.ID, "summary").text
    shot = tmp_path / "serve.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    target = os.environ.get("AFMRL_SCREENSHOT")  # the README's screenshot: AFMRL_SCREENSHOT=docs/img/serve.png
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target)


def test_an_empty_query_shows_a_message_and_the_dedup_page_an_empty_state(browser, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _ = live_server
    browser.get(url + "/")
    browser.find_element(By.ID, "text").clear()
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "message").text)
    assert "type a title" in browser.find_element(By.ID, "message").text
    browser.get(url + "/dedup")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "dedup-empty"))
    assert "--dedup" in browser.find_element(By.ID, "dedup-empty").text


def test_the_duplicate_review_page_shows_the_queue_side_by_side(browser, live_server):
    import pandas as pd
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, b, _ = live_server
    ids = read_catalog(b.catalog).listings["listing_id"].tolist()
    out = b.root / "outputs" / "dedup"  # serve.dedup's default, relative to the service's folder
    out.mkdir(parents=True, exist_ok=True)
    try:
        pd.DataFrame({"listing_a": [ids[0], ids[2]], "listing_b": [ids[1], ids[3]], "score": [0.61, 0.58],
                      "threshold": 0.62, "reason": "just below the threshold"}).to_parquet(out / "review.parquet")  # fmt: skip
        pd.DataFrame({"listing_id": ids[:3], "group_id": ["g1", "g1", "g2"], "group_size": [2, 2, 1]}).to_parquet(
            out / "groups.parquet")  # fmt: skip
        browser.get(url + "/dedup")
        WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#pairs .pair")) == 2)
        first = browser.find_elements(By.CSS_SELECTOR, "#pairs .pair")[0]
        sides = first.find_elements(By.CSS_SELECTOR, ".card")
        assert [s.get_attribute("data-listing") for s in sides] == [ids[0], ids[1]]
        assert "score 0.610" in first.text and "just below the threshold" in first.text
        assert "g1" in browser.find_element(By.ID, "groups").text
    finally:
        for f in out.glob("*.parquet"):
            f.unlink()
