"""The JSON API through the real engine (aiohttp's test client, no mocks of the engine)."""

from __future__ import annotations

import asyncio
import json
import struct
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from engine.errors import BusyError
from tests import audiogen
from tests.web.conftest import SR, TRACKS, track_id
from web.app import create_app, retry_words


@asynccontextmanager
async def client_for(service, settings=None):
    client = TestClient(TestServer(create_app(service, settings)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def err(resp: aiohttp.ClientResponse, status: int, kind: str) -> dict:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"]["kind"] == kind, body
    msg = body["error"]["message"]
    assert msg and msg.endswith((".", "…")) and "\n" not in msg  # one friendly sentence
    return body


def form(data: bytes, name: str = "file", filename: str = "clip.ogg") -> aiohttp.FormData:
    fd = aiohttp.FormData()
    fd.add_field(name, data, filename=filename, content_type="application/octet-stream")
    return fd


async def test_healthz_and_config(service) -> None:
    async with client_for(service) as c:
        r = await c.get("/healthz")
        assert r.status == 200
        body = await r.json()
        assert body["ok"] is True and body["indexed_tracks"] == len(TRACKS)
        cfg = await (await c.get("/api/config")).json()
        assert cfg["record_seconds"] == 6.0 and cfg["top_k"] == 5


async def test_page_and_static_files(service) -> None:
    async with client_for(service) as c:
        r = await c.get("/")
        assert r.status == 200 and "text/html" in r.headers["Content-Type"]
        html = await r.text()
        assert "/static/app.js" in html and "Content-Security-Policy" in r.headers
        for name in ("app.js", "style.css"):
            assert (await c.get(f"/static/{name}")).status == 200


async def test_recommend_multipart_identifies_a_phone_recording(service, web_corpus) -> None:
    async with client_for(service) as c:
        r = await c.post("/api/recommend", data=form(web_corpus["query_ogg"].read_bytes()))
        assert r.status == 200, await r.text()
        body = await r.json()
    assert body["identified"]["track_id"] == web_corpus["expected_id"]
    assert len(body["results"]) == 5
    ids = [t["track_id"] for t in body["results"]]
    assert web_corpus["expected_id"] not in ids and len(set(ids)) == 5
    for t in body["results"]:
        assert t["link"].startswith("https://open.spotify.com/track/") and t["genres"] and t["artist"]
        assert -1.0 <= t["similarity"] <= 1.0
    assert "audio_path" not in json.dumps(body)  # no server paths leave the server


async def test_recommend_raw_browser_webm_body_and_k(service, web_corpus) -> None:
    async with client_for(service) as c:
        r = await c.post("/api/recommend?k=3", data=web_corpus["query_webm"].read_bytes(),
                         headers={"Content-Type": "audio/webm;codecs=opus"})
        assert r.status == 200, await r.text()
        body = await r.json()
    assert body["identified"]["track_id"] == web_corpus["expected_id"] and len(body["results"]) == 3


async def test_413_too_large(service, web_settings, web_corpus) -> None:
    small = web_settings.replace(max_upload_bytes=20_000)
    data = web_corpus["query_wav"].read_bytes()
    assert len(data) > 100_000
    async with client_for(service, small) as c:
        await err(await c.post("/api/recommend", data=data), 413, "too_large")  # raw, over the request cap
        await err(await c.post("/api/recommend", data=form(data)), 413, "too_large")  # multipart
        # a body streamed without Content-Length is cut off at the cap too
        async def gen():
            for i in range(0, len(data), 8192):
                yield data[i:i + 8192]
        await err(await c.post("/api/recommend", data=gen()), 413, "too_large")


async def test_415_not_audio(service) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
    async with client_for(service) as c:
        await err(await c.post("/api/recommend", data=form(png, filename="x.png")), 415, "not_audio")
        await err(await c.post("/api/recommend", data=b'{"hello": "world"}',
                               headers={"Content-Type": "application/json"}), 415, "not_audio")


async def test_422_undecodable_empty_and_too_short(service, web_corpus, tmp_path: Path) -> None:
    good = web_corpus["query_ogg"].read_bytes()
    short = audiogen.encode(audiogen.tone(440.0, 0.6, sr=SR), tmp_path / "short.ogg", sr=SR)
    async with client_for(service) as c:
        await err(await c.post("/api/recommend", data=good[:300]), 422, "corrupt")  # cut off in the header
        await err(await c.post("/api/recommend", data=b""), 422, "empty")
        await err(await c.post("/api/recommend", data=form(short.read_bytes())), 422, "too_short")


async def test_400_bad_requests(service) -> None:
    async with client_for(service) as c:
        await err(await c.post("/api/recommend", data=form(b"abc", name="audio")), 400, "bad_request")
        await err(await c.post("/api/recommend?k=zero", data=b"x"), 400, "bad_request")
        await err(await c.post("/api/recommend?k=500", data=b"x"), 400, "bad_request")
        await err(await c.get("/api/similar"), 400, "bad_request")
        await err(await c.get("/api/search"), 400, "bad_request")
        await err(await c.get("/api/search?q=neon&limit=99"), 400, "bad_request")
        await err(await c.get("/api/listen"), 400, "bad_request")  # not a WebSocket upgrade
        await err(await c.post("/api/recommend", data=b"--x\r\nbroken",
                               headers={"Content-Type": "multipart/form-data; boundary=zz"}), 400, "bad_request")


async def test_404_unknown_track_and_route(service) -> None:
    async with client_for(service) as c:
        await err(await c.get("/api/similar?track_id=nope"), 404, "not_found")
        await err(await c.get("/api/nothing-here"), 404, "not_found")


async def test_429_rate_limit_with_retry_after(service, web_settings) -> None:
    tight = web_settings.replace(web_rate_per_minute=2.0, web_rate_burst=1, web_search_rate_burst=2,
                                 web_search_rate_per_minute=6.0)
    async with client_for(service, tight) as c:
        await err(await c.post("/api/recommend", data=b""), 422, "empty")  # takes the one token
        r = await c.post("/api/recommend", data=b"")
        body = await err(r, 429, "rate_limited")
        assert 1 <= int(r.headers["Retry-After"]) <= 30
        # issue 30: the sentence is made from the header (it said "a few seconds" beside 30)
        assert body["error"]["message"].endswith(f"please try again {retry_words(int(r.headers['Retry-After']))}.")
        assert (await c.get("/api/search?q=neon")).status == 200
        assert (await c.get("/api/search?q=neon")).status == 200
        r = await c.get("/api/search?q=neon")
        await err(r, 429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1


async def test_503_busy_with_retry_after(service, monkeypatch, web_corpus) -> None:
    async def busy(*a, **k):
        raise BusyError("all query slots are taken")

    monkeypatch.setattr(service, "arecommend", busy)
    async with client_for(service) as c:
        r = await c.post("/api/recommend", data=web_corpus["query_ogg"].read_bytes())
        body = await err(r, 503, "busy")
        assert r.headers["Retry-After"] == "2" and body["error"]["message"].endswith("please try again in a few seconds.")


async def test_never_500_for_garbage(service) -> None:
    garbage = [b"\x00" * 5000, b"OggS" + bytes(range(256)) * 4, b"RIFF\x00\x00\x00\x00WAVEfmt ",
               b"ID3\x03\x00" + b"\xff" * 3000, struct.pack("<200I", *range(200)), "héllo wörld".encode()]
    async with client_for(service) as c:
        for g in garbage:
            r = await c.post("/api/recommend", data=g)
            assert 400 <= r.status < 500, (g[:16], r.status, await r.text())


async def test_search_autocomplete_and_similar(service) -> None:
    async with client_for(service) as c:
        r = await c.get("/api/search", params={"q": "neon har", "limit": "5"})
        hits = (await r.json())["results"]
        assert hits[0]["track_id"] == track_id(0) and hits[0]["title"] == "The Glass Owls – Neon Harbor"
        assert "audio_path" not in hits[0]
        typo = (await (await c.get("/api/search", params={"q": "velvet statik"})).json())["results"]
        assert typo and typo[0]["name"] == "Velvet Static"
        assert (await (await c.get("/api/search?q=")).json())["results"] == []
        body = await (await c.get(f"/api/similar?track_id={track_id(0)}")).json()
        assert body["seed"]["track_id"] == track_id(0) and len(body["results"]) == 5
        assert track_id(0) not in [t["track_id"] for t in body["results"]]
        more = await (await c.get(f"/api/similar?track_id={track_id(0)}&k=2&offset=5")).json()
        assert len(more["results"]) == 2
        assert not {t["track_id"] for t in more["results"]} & {t["track_id"] for t in body["results"]}


async def test_live_websocket_streams_and_stops_early(service, web_settings, web_corpus) -> None:
    """Chunks of a growing WebM stream, sent in (faster than) real time -> a confident early stop."""
    data = web_corpus["query_webm"].read_bytes()
    n = 10  # ~1 s of audio per chunk, like MediaRecorder.start(1000)
    chunks = [data[i * len(data) // n:(i + 1) * len(data) // n] for i in range(n)]
    settings = web_settings.replace(web_live_interval_s=0.5, web_live_stop_confidence=0.5)
    messages = []
    async with client_for(service, settings) as c, c.ws_connect("/api/listen") as ws:
        sent = 0
        try:
            for ch in chunks:
                await ws.send_bytes(ch)
                sent += 1
                await asyncio.sleep(0.35)
            await ws.send_str(json.dumps({"type": "stop"}))
        except ConnectionError:  # the server stopped listening early: the answer is waiting
            pass
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                messages.append(json.loads(msg.data))
    done = [m for m in messages if m["type"] == "done"]
    assert len(done) == 1 and done[0] is messages[-1], messages
    assert done[0]["answer"]["identified"]["track_id"] == web_corpus["expected_id"]
    assert len(done[0]["answer"]["results"]) == 5 and "audio_path" not in json.dumps(done[0])
    assert all(m["type"] in ("listening", "guess", "done", "status") for m in messages)
    print("live:", sent, "chunks sent;", [(m["type"], m.get("seconds"), m.get("confident")) for m in messages])


async def test_live_websocket_errors_are_one_sentence(service) -> None:
    async with client_for(service) as c:
        async with c.ws_connect("/api/listen") as ws:
            await ws.send_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 3000)
            await ws.send_str('{"type":"stop"}')
            msg = await ws.receive_json(timeout=30)
        assert msg["type"] == "error" and msg["kind"] == "not_audio" and msg["message"]


async def test_live_sessions_are_limited(service, web_settings) -> None:
    async with client_for(service, web_settings.replace(web_live_max_sessions=1)) as c, c.ws_connect("/api/listen"):
        await asyncio.sleep(0.05)
        r = await c.get("/api/listen", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                 "Sec-WebSocket-Version": "13",
                                                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        await err(r, 503, "busy")


def scrape(text: str) -> dict[tuple[str, tuple], float]:
    """A scrape as ``{(sample name, sorted labels): value}``, read by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


async def test_metrics_count_requests_audio_queries_and_refusals(service, web_settings, web_corpus) -> None:
    tight = web_settings.replace(web_search_rate_burst=1, web_search_rate_per_minute=1.0)
    async with client_for(service, tight) as c:
        assert (await c.get("/api/search?q=neon")).status == 200
        assert (await c.get("/api/search?q=neon")).status == 429
        assert (await c.post("/api/recommend", data=web_corpus["query_ogg"].read_bytes())).status == 200
        assert (await c.post("/api/recommend", data=b"")).status == 422
        assert (await c.get("/no/such/page")).status == 404
        r = await c.get("/metrics")
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        m = scrape(await r.text())
    req = lambda route, status, method="GET": m.get(
        ("synesthete_web_requests_total", (("method", method), ("route", route), ("status", status))), 0)
    assert req("/api/search", "200") == 1 and req("/api/search", "429") == 1
    assert req("/api/recommend", "200", "POST") == 1 and req("/api/recommend", "422", "POST") == 1
    assert req("unmatched", "404") == 1  # the raw path never becomes a label
    assert m[("synesthete_web_rate_limited_total", (("limit", "search"),))] == 1
    assert m[("synesthete_web_audio_queries_total", (("outcome", "ok"), ("source", "upload")))] == 1
    assert m[("synesthete_web_audio_queries_total", (("outcome", "empty"), ("source", "upload")))] == 1
    assert m[("synesthete_web_request_seconds_count", (("route", "/api/recommend"),))] == 2
    assert m[("synesthete_web_audio_query_seconds_count", (("source", "upload"),))] == 2
    assert m[("synesthete_web_up", ())] == 1 and m[("synesthete_web_live_sessions", ())] == 0
    assert not any(name.startswith("synesthete_bot_") for name, _ in m)


async def test_two_apps_in_one_process_keep_separate_metrics(service) -> None:
    """``synesthete-bot --with-web`` and tests build several apps: each has its own registry."""
    async with client_for(service) as a, client_for(service) as b:
        assert (await a.get("/api/search?q=neon")).status == 200
        ma = scrape(await (await a.get("/metrics")).text())
        mb = scrape(await (await b.get("/metrics")).text())
    key = ("synesthete_web_requests_total", (("method", "GET"), ("route", "/api/search"), ("status", "200")))
    assert ma[key] == 1 and key not in mb


async def test_live_session_guesses_are_counted(service) -> None:
    async with client_for(service) as c:
        async with c.ws_connect("/api/listen") as ws:
            await ws.send_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 3000)
            await ws.send_str('{"type":"stop"}')
            await ws.receive_json(timeout=30)
        await asyncio.sleep(0.05)
        m = scrape(await (await c.get("/metrics")).text())
    assert m[("synesthete_web_audio_queries_total", (("outcome", "not_audio"), ("source", "live")))] == 1
    assert m[("synesthete_web_live_sessions", ())] == 0


def test_the_real_service_keeps_the_front_end_contract(service) -> None:
    from engine.api import SynestheteAPI

    assert isinstance(service, SynestheteAPI)


async def test_real_engine_wrappers_time_out_and_refuse_when_full(service, web_settings, monkeypatch,
                                                                   web_corpus) -> None:
    """The real ``a*`` wrappers (the bot's tests use a stub): 503 query_timeout, then 503 busy at once."""
    import time as _time

    slow = web_settings.replace(query_timeout_s=0.3)
    monkeypatch.setattr(service, "settings", slow)
    monkeypatch.setattr(service, "recommend", lambda *a, **k: _time.sleep(0.6))
    async with client_for(service, slow.replace(web_rate_per_minute=0)) as c:
        await err(await c.post("/api/recommend", data=b"x"), 503, "query_timeout")
    monkeypatch.setattr(service, "settings", web_settings.replace(query_timeout_s=10.0))
    monkeypatch.setattr(service, "recommend", lambda *a, **k: _time.sleep(0.3))
    service._async_slots = None  # sized from the settings on first use
    slots = max(1, web_settings.workers) * 4
    results = await asyncio.gather(*(service.arecommend(b"x") for _ in range(slots + 1)),
                                   return_exceptions=True)
    assert sum(isinstance(r, BusyError) for r in results) == 1
    assert sum(r is None for r in results) == slots


def test_the_promised_wait_is_the_retry_after_header() -> None:
    from engine.errors import StoreError, StoreUnavailableError
    from web.app import RateLimited, error_body, retry_after_for, with_retry_words

    assert [retry_words(s) for s in (1, 5, 10, 30, 60, 90, 300)] == [
        "in a few seconds", "in a few seconds", "in about 10 seconds", "in about 30 seconds", "in a minute",
        "in a minute", "in about 5 minutes"]
    store = StoreUnavailableError("down")  # "... please try again in a minute." beside Retry-After: 10
    assert retry_after_for(store, 503) == 10
    assert error_body(store, 10)["message"] == "The music index isn't available right now; please try again in about 10 seconds."
    assert error_body(StoreError("x"), 10)["message"].endswith("please try again in about 10 seconds.")
    limited = RateLimited(29.2)
    assert retry_after_for(limited, 429) == 30
    assert error_body(limited, 30)["message"] == "You're going a bit fast; please try again in about 30 seconds."
    # a sentence that promises no time is left alone
    assert with_retry_words("That took too long; please try again with a shorter clip.", 5) == \
        "That took too long; please try again with a shorter clip."


async def test_similar_takes_a_pasted_spotify_track_link(service) -> None:
    """Issue 31 step 1: /api/similar?track_id= accepts a link as people paste it; other links get a sentence."""
    link = f"https://open.spotify.com/intl-de/track/{track_id(3)}?si=0123abcd"
    async with client_for(service) as c:
        r = await c.get("/api/similar", params={"track_id": link})
        assert r.status == 200, await r.text()
        body = await r.json()
        assert body["seed"]["track_id"] == track_id(3) and body["results"]
        r = await c.get("/api/similar", params={"track_id": f"https://open.spotify.com/album/{track_id(3)}"})
        msg = (await err(r, 422, "not_a_track_link"))["error"]["message"]
        assert "album" in msg and "voice note" in msg
        r = await c.get("/api/similar", params={"track_id": "https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC"})
        msg = (await err(r, 404, "not_found"))["error"]["message"]
        assert msg.startswith("That song isn't in my catalogue") and "voice note" in msg
        r = await c.get("/api/similar", params={"track_id": "https://spotify.link/AbCd1234"})
        assert "full" in (await err(r, 422, "not_a_track_link"))["error"]["message"]


async def test_radio_as_json_links_m3u_and_csv(service) -> None:
    """Issue 31 step 2: /api/radio drifts from a track (or a pasted link); the same tracks in every format."""
    link = f"https://open.spotify.com/track/{track_id(2)}?si=x"
    async with client_for(service) as c:
        r = await c.get("/api/radio", params={"track_id": link, "n": "6"})
        assert r.status == 200, await r.text()
        body = await r.json()
        ids = [t["track_id"] for t in body["results"]]
        assert body["seed"]["track_id"] == track_id(2) and 1 <= len(ids) <= 6 and len(set(ids)) == len(ids)
        assert track_id(2) not in ids
        if len(ids) < 6:
            assert body["note"].startswith(f"Only {len(ids)} tracks qualify")
        links = await (await c.get("/api/radio", params={"track_id": track_id(2), "n": "6", "format": "links"})).text()
        assert links.splitlines() == [f"https://open.spotify.com/track/{i}" for i in ids]
        r = await c.get("/api/radio", params={"track_id": track_id(2), "n": "6", "format": "m3u"})
        assert r.headers["Content-Disposition"] == 'attachment; filename="radio.m3u"'
        assert (await r.text()).startswith("#EXTM3U\n#PLAYLIST:Radio: ")
        csv_body = await (await c.get("/api/radio", params={"track_id": track_id(2), "format": "csv"})).text()
        assert csv_body.splitlines()[0] == "position,artist,title,track_id,link"
        for bad in ({"track_id": track_id(2), "n": "0"}, {"track_id": track_id(2), "n": "10000"},
                    {"track_id": track_id(2), "format": "xml"}, {}):
            await err(await c.get("/api/radio", params=bad), 400, "bad_request")
        await err(await c.get("/api/radio", params={"track_id": f"spotify:album:{track_id(2)}"}), 422,
                  "not_a_track_link")


async def test_radio_from_a_recording(service, web_corpus) -> None:
    """issue 31: POST /api/radio takes a recording as /api/recommend does; heard says where it started."""
    async with client_for(service) as c:
        r = await c.post("/api/radio?n=5", data=form(web_corpus["query_ogg"].read_bytes()))
        assert r.status == 200, await r.text()
        body = await r.json()
        assert body["heard"]["identified"]["track_id"] == web_corpus["expected_id"]
        assert body["seed"]["track_id"] == web_corpus["expected_id"]
        ids = [t["track_id"] for t in body["results"]]
        assert 1 <= len(ids) <= 5 and web_corpus["expected_id"] not in ids
        m3u = await (await c.post("/api/radio?n=5&format=m3u", data=form(web_corpus["query_ogg"].read_bytes()))).text()
        assert m3u.startswith("#EXTM3U")
        await err(await c.post("/api/radio?n=99", data=b"x"), 400, "bad_request")  # refused before the upload
        await err(await c.post("/api/radio", data=form(b"not audio at all")), 415, "not_audio")
