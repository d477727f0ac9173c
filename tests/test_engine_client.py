"""The engine as a service: a real engine process on loopback, asked by EngineClient and the CLI.

One contract, tested both ways: the answers the in-process service gave are compared with
what the same engine, serving from another process, sends over HTTP.  The index is a small
real one (ffmpeg, log-mel backbone, milvus-lite, fingerprints) built for this module.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from engine.api import SynestheteAPI
from engine.client import EngineClient, error_from_body, find_running_engine
from engine.errors import EngineUnavailableError, NotAudioError, StoreUnavailableError, TrackNotFoundError
from engine.filters import make_filter
from engine.settings import Settings
from tests import audiogen

pytestmark = pytest.mark.slow

SR = 16000
N = 8
TOKEN = "s3cret-token"


def _tid(i: int) -> str:
    return f"EngTrack{i:02d}".ljust(22, "x")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, "SYNESTHETE_DATA_DIR": str(settings.data_dir), "SYNESTHETE_BACKBONE": "logmel",
            "SYNESTHETE_MODEL_CACHE_DIR": str(settings.model_cache_dir), "SYNESTHETE_WORKERS": "1", **extra}


#: the in-process answers, in a process of their own (milvus-lite: one process per index, for its lifetime)
IN_PROCESS = """
import json, sys
from engine.filters import make_filter
from engine.service import SynestheteService
from engine.settings import Settings
tid = lambda i: f"EngTrack{i:02d}".ljust(22, "x")
with SynestheteService(Settings.from_env(env_file=None)) as svc:
    print(json.dumps({
        "recommend": svc.recommend(sys.argv[1], k=4).to_dict(),
        "similar": svc.similar_to(tid(2), k=4).to_dict(),
        "filtered": svc.similar_to(tid(2), k=3, filters=make_filter("jazz")).to_dict(),
        "artist": svc.more_by_artist(tid(1), k=3).to_dict(),
        "search": [(h.track.track_id, round(h.score, 4)) for h in svc.search_tracks("song 5", 5)],
        "about": svc.about()}))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A built index, and the answers the in-process engine gives (each in its own process,
    before the server holds the index: milvus-lite lets a process open an index once)."""
    root = tmp_path_factory.mktemp("engine")
    (root / "audio").mkdir()
    rows = ["genre,artist_name,track_name,track_id,popularity,duration_ms"]
    for i in range(N):
        rows.append(f"{['Rock', 'Jazz'][i % 2]},Band {i % 4},Song {i},{_tid(i)},{40 + i},20000")
        audiogen.encode(audiogen.synthetic_track(300 + i, 20.0, sr=SR), root / "audio" / f"{_tid(i)}.ogg", sr=SR)
    (root / "tracks.csv").write_text("\n".join(rows) + "\n")
    clip = audiogen.synthetic_track(303, 20.0, sr=SR)[5 * SR: 15 * SR]
    note = audiogen.encode(audiogen.phone_degrade(clip, sr=SR, snr_db=20.0, seed=1), root / "note.ogg", sr=SR,
                           codec_args=["-c:a", "libopus", "-b:a", "24k"])
    settings = Settings(data_dir=root / "data", backbone="logmel", workers=1, model_cache_dir=root / "models")
    build = subprocess.run([sys.executable, "-m", "index_builder.cli", "--env-file", os.devnull, "build", "--csv",
                            str(root / "tracks.csv"), "--audio", str(root / "audio"), "--workers", "1", "--no-tags"],
                           env=_env(settings), capture_output=True, text=True, timeout=600, cwd=root)
    assert build.returncode == 0, build.stderr
    answers = subprocess.run([sys.executable, "-c", IN_PROCESS, str(note)], env=_env(settings), capture_output=True,
                             text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert answers.returncode == 0, answers.stderr
    expected = json.loads(answers.stdout)
    expected["search"] = [tuple(x) for x in expected["search"]]
    return {"root": root, "note": note, "settings": settings, "expected": expected}


@pytest.fixture(scope="module")
def engine(built: dict):
    """``synesthete serve`` in its own process, holding the index; its URL."""
    port = _free_port()
    root, settings = built["root"], built["settings"]
    env = _env(settings, SYNESTHETE_ENGINE_TOKEN=TOKEN, SYNESTHETE_WEB_SEARCH_RATE_BURST="3",
               SYNESTHETE_WEB_SEARCH_RATE_PER_MINUTE="6")
    log = open(root / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--env-file", os.devnull, "serve",
                             "--port", str(port)], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the engine did not start:\n" + (root / "serve.log").read_text())
        time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _client(built: dict, url: str, token: str = TOKEN) -> EngineClient:
    return EngineClient(built["settings"].replace(engine_url=url, engine_token=token))


def _same(a: dict, b: dict) -> None:
    """Equal answers: everything but timings and the server-side file paths."""
    def strip(d: dict) -> dict:
        d = {k: v for k, v in d.items() if k != "timings_ms"}
        for key in ("identified", "seed"):
            if d.get(key):
                d[key] = {k: v for k, v in d[key].items() if k != "audio_path"}
        d["results"] = [{k: v for k, v in r.items() if k != "audio_path"} for r in d["results"]]
        return d
    assert strip(a) == strip(b)


def test_the_client_gives_the_in_process_answers(built: dict, engine: str) -> None:
    client = _client(built, engine)
    assert isinstance(client, SynestheteAPI)
    exp = built["expected"]
    rec = client.recommend(built["note"], k=4)
    assert rec.identified is not None and rec.identified.track.track_id == _tid(3)
    _same(rec.to_dict(), exp["recommend"])
    _same(client.similar_to(_tid(2), k=4).to_dict(), exp["similar"])
    _same(client.similar_to(_tid(2), k=3, filters=make_filter("jazz")).to_dict(), exp["filtered"])
    _same(client.more_by_artist(_tid(1), k=3).to_dict(), exp["artist"])
    assert [(h.track.track_id, round(h.score, 4)) for h in client.search_tracks("song 5", 5)] == exp["search"]
    about = client.about()
    assert about["model_id"] == exp["about"]["model_id"] and about["indexed_tracks"] == N
    assert about["engine_url"] == engine


async def test_the_async_calls_the_bot_uses(built: dict, engine: str) -> None:
    client = _client(built, engine)
    rec = await client.arecommend(built["note"].read_bytes(), k=3)
    assert rec.identified is not None and rec.identified.track.track_id == _tid(3) and len(rec.results) == 3
    page2 = await client.asimilar_to(_tid(2), k=2, offset=2)
    assert [r.track.track_id for r in page2.results] == [r["track_id"] for r in built["expected"]["similar"]["results"][2:4]]


def test_errors_come_back_typed_with_the_engines_sentence(built: dict, engine: str, tmp_path: Path) -> None:
    client = _client(built, engine)
    with pytest.raises(TrackNotFoundError) as nf:
        client.similar_to("no-such-track")
    assert nf.value.user_message == TrackNotFoundError.user_message
    text = tmp_path / "notes.mp3"
    text.write_text("not audio at all\n" * 50)
    with pytest.raises(NotAudioError):
        client.recommend(text)
    with pytest.raises(EngineUnavailableError):
        _client(built, f"http://127.0.0.1:{_free_port()}").similar_to(_tid(1))
    assert isinstance(error_from_body(503, {"error": {"kind": "store_unavailable", "message": "x"}}),
                      StoreUnavailableError)


def test_a_trusted_front_end_is_not_rate_limited_a_visitor_is(built: dict, engine: str) -> None:
    trusted = _client(built, engine)
    for _ in range(6):  # the search burst is 3
        trusted.search_tracks("song", 3)
    visitor = _client(built, engine, token="")
    with pytest.raises(Exception) as limited:
        for _ in range(6):
            visitor.search_tracks("song", 3)
    assert getattr(limited.value, "kind", "") == "rate_limited"


def test_the_cli_asks_the_running_engine_and_says_so(built: dict, engine: str) -> None:
    found = find_running_engine(built["settings"])
    assert found is not None and found.url == engine and found.token
    assert oct((built["settings"].data_dir / "engine.json").stat().st_mode & 0o777) == "0o600"
    env = _env(built["settings"])  # no SYNESTHETE_ENGINE_TOKEN: the owner's CLI is trusted by the local token
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "--env-file", os.devnull, "query", str(built["note"]),
                           "--json"], env=env, capture_output=True, text=True, timeout=300, cwd=built["root"])
    assert proc.returncode == 0, proc.stderr
    assert "asking it at " + engine in proc.stderr and "Traceback" not in proc.stderr
    assert '"track_id": "' + _tid(3) in proc.stdout


def test_the_local_token_makes_the_owners_cli_a_trusted_front_end(built: dict, engine: str) -> None:
    found = find_running_engine(built["settings"])
    local = EngineClient(built["settings"], found.url, token=found.token)
    for _ in range(6):  # the search burst is 3
        local.search_tracks("song", 3)


def test_an_engine_json_naming_a_live_pid_that_is_no_engine_is_not_trusted(tmp_path: Path, monkeypatch) -> None:
    """Pids are reused and a container's engine is pid 1: the CLI checks that the engine answers."""
    from engine import cli

    settings = Settings(data_dir=tmp_path, backbone="logmel")
    (tmp_path / "engine.json").write_text(json.dumps({"url": f"http://127.0.0.1:{_free_port()}",
                                                      "pid": os.getpid(), "token": "x"}))
    opened = []
    monkeypatch.setattr("engine.service.SynestheteService", lambda s: opened.append(s) or "in-process")
    assert cli.open_engine(settings) == "in-process" and opened == [settings]


def test_a_header_that_is_not_utf8_is_no_internal_error(engine: str) -> None:
    port = int(engine.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /api/search?q=song HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
                  b"Connection: close\r\n\r\n")
        status = s.recv(64).split(b" ")[1]
    assert status in (b"200", b"429")


def test_the_match_words_survive_the_trip_over_http() -> None:
    """Found trying it: "top 3%" in-process became "top 4%" through the engine (96.54 -> 96.5)."""
    from engine.catalogue import Track
    from engine.service import ScoredTrack

    for pct, sim in ((96.54, 0.83499), (96.45, 0.8350), (99.95, 0.5)):
        here = ScoredTrack(Track("id", "n", "a"), sim, 4, pct)
        there = ScoredTrack.from_dict(json.loads(json.dumps(here.to_dict())))
        assert there.match_text == here.match_text
        bare = ScoredTrack(Track("id", "n", "a"), sim)
        assert ScoredTrack.from_dict(json.loads(json.dumps(bare.to_dict()))).match_text == bare.match_text
