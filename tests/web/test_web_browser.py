"""The page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

Chromium's fake microphone plays a generated WAV (a phone-degraded excerpt of a
catalogue track), so Record and Listen live go through getUserMedia, the Web
Audio level meter, MediaRecorder (Opus/WebM), the API / WebSocket and the real
engine.  Skipped with a reason when chromium, chromedriver or selenium is missing
(scripts/setup.sh installs them).

Set SYNESTHETE_WEB_SCREENSHOT=docs/web-answer.png to refresh the screenshot in the docs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from pathlib import Path
from typing import Self

import pytest

from tests import audiogen
from tests.web.conftest import SR, TRACKS

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
EXPECTED_NAME = TRACKS[3][0]  # the fake microphone plays catalogue track 3


def _skip_reason() -> str | None:
    if not CHROMIUM:
        return "chromium is not installed (apt-get install chromium chromium-driver)"
    if not CHROMEDRIVER:
        return "chromedriver is not installed (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


if _skip_reason():
    pytest.skip(_skip_reason(), allow_module_level=True)

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ANSWER_TIMEOUT_S = 60


class ServerThread:
    """The real aiohttp app on 127.0.0.1:<free port>, in its own thread and event loop."""

    def __init__(self, app) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="web-test-server", daemon=True)
        self.port = 0

    def _run(self) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app)
        self.loop.run_until_complete(self.runner.setup())
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.loop.run_until_complete(web.SockSite(self.runner, sock).start())
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())

    def __enter__(self) -> Self:
        self.thread.start()
        assert self.ready.wait(30), "server did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@pytest.fixture(scope="module")
def server(web_service, web_settings):
    from web.app import create_app

    web_service._async_slots = None  # this thread's loop gets its own semaphore
    with ServerThread(create_app(web_service, web_settings)) as srv:
        yield srv
    web_service._async_slots = None


@pytest.fixture(scope="module")
def fake_mic(web_corpus, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    return audiogen.encode(web_corpus["excerpt"], path, sr=SR, codec_args=["-ar", "48000", "-c:a", "pcm_s16le"])


@pytest.fixture(scope="module")
def browser(fake_mic, tmp_path_factory):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--mute-audio", "--window-size=900,1400",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={fake_mic}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser, server) -> None:
    browser.get(server.url)
    WebDriverWait(browser, 15).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    WebDriverWait(browser, 15).until(lambda d: "catalogue" in d.find_element(By.ID, "about").text)


def wait_for_answer(browser, n: int = 5) -> list:
    def ready(d):
        err = d.find_element(By.ID, "error")
        if err.is_displayed() and err.text:
            raise AssertionError(f"the page shows an error: {err.text}")
        items = d.find_elements(By.CSS_SELECTOR, "#results li.track")
        return items if len(items) == n else False

    return WebDriverWait(browser, ANSWER_TIMEOUT_S, poll_frequency=0.3).until(ready)


def check_tracks(items) -> None:
    for li in items:
        assert li.find_element(By.CSS_SELECTOR, ".name").text
        assert li.find_element(By.CSS_SELECTOR, ".artist").text
        assert li.find_element(By.CSS_SELECTOR, ".genre").text
        assert "%" in li.find_element(By.CSS_SELECTOR, ".similarity").text
        link = li.find_element(By.CSS_SELECTOR, "a.spotify").get_attribute("href")
        assert link.startswith("https://open.spotify.com/track/")


def test_record_shows_five_tracks_and_sounds_like(browser, server, tmp_path) -> None:
    open_page(browser, server)
    browser.find_element(By.ID, "record").click()
    # the level meter moves while recording and the countdown runs
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "meter-wrap").is_displayed())
    WebDriverWait(browser, 10).until(
        lambda d: float(d.execute_script("return parseFloat(document.getElementById('meter-bar').style.width)||0"))
        > 5)
    assert "s left" in browser.find_element(By.ID, "countdown").text
    items = wait_for_answer(browser)
    check_tracks(items)
    headline = browser.find_element(By.ID, "sounds-like").text
    assert headline.startswith("Sounds like") and EXPECTED_NAME in headline
    # the Spotify player appears only on request, only for /track/ links, with the embed URL
    items[0].find_element(By.CSS_SELECTOR, "button.play").click()
    frame = WebDriverWait(browser, 5).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".embed iframe")))
    assert frame.get_attribute("src").startswith("https://open.spotify.com/embed/track/")
    items[0].find_element(By.CSS_SELECTOR, "button.play").click()  # close it again for the screenshot
    shot = tmp_path / "answer.png"
    browser.save_screenshot(str(shot))
    target = os.environ.get("SYNESTHETE_WEB_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)


def test_upload_shows_answer(browser, server, web_corpus) -> None:
    open_page(browser, server)
    browser.find_element(By.ID, "file").send_keys(str(web_corpus["query_ogg"]))
    items = wait_for_answer(browser)
    check_tracks(items)
    assert EXPECTED_NAME in browser.find_element(By.ID, "sounds-like").text


def test_upload_of_a_non_audio_file_says_one_sentence(browser, server, tmp_path) -> None:
    open_page(browser, server)
    bogus = tmp_path / "notes.txt"
    bogus.write_text("this is not a song\n" * 20)
    browser.find_element(By.ID, "file").send_keys(str(bogus))
    err = WebDriverWait(browser, 20).until(EC.visibility_of_element_located((By.ID, "error")))
    assert err.text.startswith("That file doesn't look like audio") and err.text.count(".") <= 2


def test_autocomplete_choose_shows_similar(browser, server) -> None:
    open_page(browser, server)
    box = browser.find_element(By.ID, "search")
    box.send_keys("velvet sta")
    option = WebDriverWait(browser, 10).until(
        EC.visibility_of_element_located((By.CSS_SELECTOR, "#suggestions li[role=option]")))
    assert option.text.startswith(EXPECTED_NAME)
    option.click()
    items = wait_for_answer(browser)
    check_tracks(items)
    assert EXPECTED_NAME in browser.find_element(By.ID, "headline").text
    assert EXPECTED_NAME not in [li.find_element(By.CSS_SELECTOR, ".name").text for li in items]


def test_listen_live_streams_and_answers(browser, server) -> None:
    open_page(browser, server)
    browser.find_element(By.ID, "live").click()
    items = wait_for_answer(browser)
    # running guesses may show first; wait for the final answer (recording stopped)
    WebDriverWait(browser, ANSWER_TIMEOUT_S).until(
        lambda d: not d.find_element(By.ID, "meter-wrap").is_displayed()
        and "guess" not in d.find_element(By.ID, "headline").get_attribute("class"))
    items = browser.find_elements(By.CSS_SELECTOR, "#results li.track")
    assert len(items) == 5
    check_tracks(items)
    assert EXPECTED_NAME in browser.find_element(By.ID, "sounds-like").text


def test_fits_a_phone_screen(browser, server) -> None:
    browser.set_window_size(390, 844)
    try:
        open_page(browser, server)
        browser.find_element(By.ID, "search").send_keys("neon")
        WebDriverWait(browser, 10).until(
            EC.visibility_of_element_located((By.CSS_SELECTOR, "#suggestions li[role=option]"))).click()
        wait_for_answer(browser)
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1"), "horizontal scrolling on a phone"
    finally:
        browser.set_window_size(900, 1400)
