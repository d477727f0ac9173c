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
import base64
import dataclasses
import os
import shutil
import socket
import subprocess
import threading
import time
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
from selenium.webdriver.common.keys import Keys
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
    # these tests make more audio queries in 30 s than the per-IP burst (6) allows; the limits
    # themselves are tested in test_web_api.py
    settings = dataclasses.replace(web_settings, web_rate_per_minute=600.0, web_rate_burst=100)
    with ServerThread(create_app(web_service, settings)) as srv:
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


# ---- the microphone: one recording at a time (issue 16) ---------------------------------------
#
# The hooks wrap the browser's own APIs after the page loaded (app.js looks them up at call
# time), so they count what the page really does: microphone streams opened (and whether any
# track is still live), WebSockets opened, and every recording posted to /api/recommend.

MIC_HOOKS = """
const t = window.__mic = { gum: 0, streams: [], sockets: 0, uploads: [], pressAfterOpen: null };
const md = navigator.mediaDevices;
const gum = md.getUserMedia.bind(md);
md.getUserMedia = async (c) => {
  t.gum += 1;
  const s = await gum(c);
  t.streams.push(s);
  // "a second press ~20 ms after starting"
  if (t.pressAfterOpen) { const id = t.pressAfterOpen; t.pressAfterOpen = null;
                          setTimeout(() => document.getElementById(id).click(), 20); }
  return s;
};
const WS = window.WebSocket;
window.WebSocket = class extends WS { constructor(...a) { super(...a); t.sockets += 1; } };
const f = window.fetch.bind(window);
window.fetch = (url, opts) => {
  if (String(url).includes("/api/recommend") && opts && opts.body instanceof FormData) {
    const file = opts.body.get("file");
    const entry = { size: file.size, b64: null };
    t.uploads.push(entry);
    const r = new FileReader();
    r.onload = () => { entry.b64 = String(r.result).split(",")[1] || ""; };
    r.readAsDataURL(file);
  }
  return f(url, opts);
};
t.liveTracks = () => t.streams.flatMap((s) => s.getTracks()).filter((x) => x.readyState === "live").length;
"""


def install_mic_hooks(browser) -> None:
    browser.execute_script(MIC_HOOKS)


def mic(browser, expr: str):
    return browser.execute_script(f"return window.__mic.{expr}")


def press(browser, button: str, how: str) -> None:
    """Press ``button`` twice: both in one go, or the second ~20 ms after the microphone opened."""
    if how == "at once":
        browser.execute_script(f"const b = document.getElementById('{button}'); b.click(); b.click();")
    else:
        browser.execute_script(f"window.__mic.pressAfterOpen = '{button}'; document.getElementById('{button}').click();")


def upload_seconds(browser, n: int, tmp_path: Path) -> float:
    """Seconds of audio in the n-th recording the page posted (decoded by the real ffmpeg)."""
    WebDriverWait(browser, ANSWER_TIMEOUT_S).until(
        lambda d: d.execute_script(f"const u = window.__mic.uploads[{n}]; return Boolean(u && u.b64 !== null)"))
    data = base64.b64decode(mic(browser, f"uploads[{n}].b64"))
    path = tmp_path / f"upload{n}.webm"
    path.write_bytes(data)
    done = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "8000", "pipe:"],
                          capture_output=True)
    # a recording cut to nothing (the orphan-timer bug) is a header without audio: 0 s
    return len(done.stdout) / 2 / 8000 if done.returncode == 0 else 0.0


def wait_idle(browser) -> None:
    """No recording and no query in flight: both buttons are back (the page disables them until then)."""
    WebDriverWait(browser, ANSWER_TIMEOUT_S, poll_frequency=0.3).until(lambda d: d.execute_script(
        "const r = document.getElementById('record'), l = document.getElementById('live');"
        "return r.textContent.includes('Record') && !r.disabled && l.textContent.includes('Listen') && !l.disabled"))


@pytest.mark.parametrize("how", ["at once", "20 ms after the microphone opened"])
def test_record_pressed_twice_gives_one_full_recording(browser, server, web_settings, tmp_path, how) -> None:
    open_page(browser, server)
    install_mic_hooks(browser)
    full = web_settings.web_record_seconds
    press(browser, "record", how)
    wait_for_answer(browser)
    wait_idle(browser)
    assert mic(browser, "gum") == 1, "two presses opened two microphone streams"
    assert len(mic(browser, "uploads")) == 1
    # the second press neither stopped it early (a 0-ms upload) nor started another
    assert full - 1.0 <= upload_seconds(browser, 0, tmp_path) <= full + 1.5
    assert mic(browser, "liveTracks()") == 0, "a microphone track is still on"
    # the next recording gets its whole length: no timer of the first one is left to cut it short
    browser.find_element(By.ID, "record").click()
    WebDriverWait(browser, 20).until(lambda d: len(d.execute_script("return window.__mic.uploads")) == 2)
    wait_idle(browser)
    assert full - 1.0 <= upload_seconds(browser, 1, tmp_path) <= full + 1.5
    assert mic(browser, "gum") == 2 and mic(browser, "liveTracks()") == 0
    assert not browser.find_element(By.ID, "error").is_displayed()


def test_stop_before_the_minimum_sends_nothing_and_says_why(browser, server) -> None:
    open_page(browser, server)
    install_mic_hooks(browser)
    rec = browser.find_element(By.ID, "record")
    rec.click()
    WebDriverWait(browser, 10, poll_frequency=0.05).until(lambda d: "Stop" in rec.text and rec.is_enabled())
    rec.click()  # ~0.5 s in: under the 2-s minimum (min_signal_seconds)
    err = WebDriverWait(browser, 10).until(EC.visibility_of_element_located((By.ID, "error")))
    assert err.text == ("That was too short for me to hear anything; "
                        "let me listen for at least 2 seconds.")
    time.sleep(1.5)  # a recorder's late chunk would be posted by now
    assert mic(browser, "uploads") == []
    assert mic(browser, "liveTracks()") == 0
    assert rec.text == "● Record" and rec.is_enabled()


@pytest.mark.parametrize("how", ["at once", "20 ms after the microphone opened"])
def test_listen_live_pressed_twice_gives_one_session(browser, server, how) -> None:
    open_page(browser, server)
    install_mic_hooks(browser)
    press(browser, "live", how)
    wait_for_answer(browser)
    WebDriverWait(browser, ANSWER_TIMEOUT_S).until(
        lambda d: not d.find_element(By.ID, "meter-wrap").is_displayed()
        and "guess" not in d.find_element(By.ID, "headline").get_attribute("class"))
    wait_idle(browser)
    assert mic(browser, "sockets") == 1, "two presses opened two live sessions"
    assert mic(browser, "gum") == 1, "two presses opened two microphone streams"
    assert mic(browser, "liveTracks()") == 0, "a microphone track is still on"
    assert EXPECTED_NAME in browser.find_element(By.ID, "sounds-like").text
    assert not browser.find_element(By.ID, "error").is_displayed()


def ask_by_link(browser, server, link: str) -> list:
    """Open the page, paste ``link`` into the search box, press Enter; the answer's track items."""
    open_page(browser, server)
    box = browser.find_element(By.ID, "search")
    box.send_keys(link)
    box.send_keys(Keys.ENTER)
    return wait_for_answer(browser)


def test_a_pasted_spotify_link_in_the_search_box_answers(browser, server, web_corpus) -> None:
    """issue 31: the search box takes a Spotify track link; Enter answers with the track it names."""
    items = ask_by_link(browser, server, f"https://open.spotify.com/intl-fr/track/{web_corpus['expected_id']}?si=abc")
    check_tracks(items)
    assert EXPECTED_NAME in browser.find_element(By.ID, "headline").text
    assert not browser.find_element(By.ID, "suggestions").is_displayed()


def test_radio_from_an_answer_and_copy_its_links(browser, server, web_corpus) -> None:
    """issue 31: every answer offers a radio; the radio offers its links (clipboard) and an .m3u download."""
    ask_by_link(browser, server, f"spotify:track:{web_corpus['expected_id']}")
    browser.find_element(By.ID, "radio").click()
    WebDriverWait(browser, ANSWER_TIMEOUT_S).until(EC.presence_of_element_located((By.ID, "radio-from")))
    assert EXPECTED_NAME in browser.find_element(By.ID, "radio-from").text
    items = browser.find_elements(By.CSS_SELECTOR, "#results li.track")
    ids = [li.get_attribute("data-track-id") for li in items]
    assert ids and len(set(ids)) == len(ids) and web_corpus["expected_id"] not in ids
    m3u = browser.find_element(By.CSS_SELECTOR, "#answer-actions a.download").get_attribute("href")
    assert "/api/radio?" in m3u and "format=m3u" in m3u
    browser.execute_script("navigator.clipboard.writeText = (t) => { window.__copied = t; return Promise.resolve(); };")
    browser.find_element(By.ID, "copy-links").click()
    WebDriverWait(browser, 5).until(lambda d: d.execute_script("return window.__copied"))
    copied = browser.execute_script("return window.__copied").split()
    assert copied == [f"https://open.spotify.com/track/{i}" for i in ids]
