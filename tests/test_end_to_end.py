"""The whole engine on a generated catalogue: ffmpeg -> musicnn -> head -> milvus-lite + fingerprints.

~30 distinct synthetic tracks are built through the index builder's normal path; a
phone-degraded Opus excerpt of each (a voice message recorded next to a speaker) must
be identified as its own track, and the recommendations must exclude it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from engine import cli
from engine.errors import NotAudioError, TooShortAudioError, TrackNotFoundError
from engine.service import SynestheteService
from engine.settings import Settings
from index_builder.build import BuildOptions, run_build
from tests import audiogen

pytestmark = pytest.mark.slow

N_TRACKS = 30
TRACK_SECONDS = 30.0


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path, list[str]]:
    root = tmp_path_factory.mktemp("e2e")
    audio = root / "audio"
    audio.mkdir()
    ids = [f"{i:02d}Syn{'x' * 17}"[:22] for i in range(N_TRACKS)]
    rows = []
    for i, tid in enumerate(ids):
        audiogen.encode(audiogen.synthetic_track(1000 + i, TRACK_SECONDS), audio / f"{tid}.mp3")
        rows.append({"genre": ["Ambient", "Rock", "Electronic"][i % 3], "artist_name": f"Band {i % 6}",
                     "track_name": f"Song {i}", "track_id": tid, "popularity": str(i), "duration_ms": "30000"})
    csv_path = root / "tracks.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cache = Path(__file__).resolve().parent.parent / ".pytest_cache" / "models"
    settings = Settings(data_dir=root / "data", model_cache_dir=cache, workers=2)
    report = run_build(settings, BuildOptions(csv=csv_path, audio=audio, not_spotify=True, workers=2))
    assert report.indexed == N_TRACKS and not report.failed
    assert report.calibration["status"] == "fitted", report.calibration  # 30 tracks: just enough to calibrate
    return settings, audio, ids


@pytest.fixture(scope="module")
def service(catalogue) -> SynestheteService:
    settings, _, _ = catalogue
    svc = SynestheteService(settings)
    yield svc
    svc.close()


def degraded_excerpt(path: Path, out: Path, start_s: float, seconds: float, seed: int) -> Path:
    from engine.audio import decode

    full = decode(path, 44100, __import__("engine.audio", fromlist=["DecodeLimits"]).DecodeLimits(max_seconds=600))
    clip = full.samples[int(start_s * 44100): int((start_s + seconds) * 44100)]
    noisy = audiogen.phone_degrade(clip, 44100, snr_db=15.0, seed=seed)
    return audiogen.encode(noisy, out, codec_args=["-c:a", "libopus", "-b:a", "24k", "-ac", "1"])


def test_every_degraded_excerpt_is_identified(catalogue, service: SynestheteService, tmp_path: Path) -> None:
    _, audio, ids = catalogue
    rng = np.random.default_rng(5)
    correct, missed = 0, []
    for i, tid in enumerate(ids):
        start = float(rng.uniform(0, TRACK_SECONDS - 10))
        note = degraded_excerpt(audio / f"{tid}.mp3", tmp_path / f"note{i}.ogg", start, 10.0, seed=i)
        rec = service.recommend(note)
        if rec.identified is not None and rec.identified.track.track_id == tid:
            correct += 1
            if rec.identified.method != "embedding":  # landmarks know the offset to a frame
                assert abs(rec.identified.offset_s - start) < 0.5
            # five others, never the track itself
            assert tid not in [r.track.track_id for r in rec.results]
        else:
            fp = service.fingerprints.match(service.decode(note).samples, 16000, top_k=3)
            got = rec.identified and (rec.identified.track.track_id[:2], rec.identified.method,
                                      round(rec.identified.confidence, 2))
            right_first = bool(fp) and fp[0].track_key == service.catalogue.get(tid).track_key
            missed.append((tid[:2], round(start, 1), got, [(m.score, round(m.confidence, 2)) for m in fp]
                           if right_first else []))
        assert len(rec.results) == 5
        assert all(-1.0 <= r.similarity <= 1.0 for r in rec.results)
    # The build calibrated identification on this catalogue (30 tracks, the least it calibrates):
    # every note is ranked right by the landmarks, and what is *said* follows the measured
    # probability, so a few weak matches stay unsaid, and nothing wrong is said.
    assert service.about()["identification"]["calibrated"] is True
    assert not [m for m in missed if m[2]], f"wrong answers: {missed}"
    assert all(m[3] and m[3][0][0] > m[3][1][0] for m in missed), missed
    assert correct >= N_TRACKS * 0.8, missed


def test_unknown_recording_gets_recommendations_without_identification(service: SynestheteService,
                                                                       tmp_path: Path) -> None:
    other = audiogen.encode(audiogen.synthetic_track(99_999, 12.0), tmp_path / "unknown.ogg",
                            codec_args=["-c:a", "libopus", "-b:a", "32k"])
    rec = service.recommend(other)
    assert rec.identified is None
    assert len(rec.results) == 5
    assert set(rec.timings_ms) >= {"decode", "fingerprint", "embed", "search", "total"}


def test_similar_to_and_search(catalogue, service: SynestheteService) -> None:
    _, _, ids = catalogue
    hit = service.search_tracks("song 7")[0]
    assert hit.track.name == "Song 7"
    rec = service.similar_to(hit.track.track_id)
    assert rec.seed.track_id == hit.track.track_id and len(rec.results) == 5
    assert hit.track.track_id not in [r.track.track_id for r in rec.results]
    page2 = service.similar_to(hit.track.track_id, offset=5)
    assert not {r.track.track_id for r in page2.results} & {r.track.track_id for r in rec.results}
    assert rec.results[0].track.link.startswith("https://open.spotify.com/search/")
    with pytest.raises(TrackNotFoundError):
        service.similar_to("nope")


def test_bad_input_through_the_service(service: SynestheteService) -> None:
    with pytest.raises(NotAudioError):
        service.recommend(b"definitely not audio, just some text that someone attached" * 5)
    with pytest.raises(TooShortAudioError):
        service.recommend(audiogen_bytes(np.zeros(44100 * 5, np.float32)))


def audiogen_bytes(samples: np.ndarray) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return audiogen.encode(samples, Path(d) / "x.wav").read_bytes()


async def test_async_api_runs_off_the_loop(catalogue, service: SynestheteService, tmp_path: Path) -> None:
    import asyncio

    _, audio, ids = catalogue
    note = degraded_excerpt(audio / f"{ids[3]}.mp3", tmp_path / "a.ogg", 5.0, 10.0, seed=3)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    rec, hits = await asyncio.gather(service.arecommend(note), service.asearch_tracks("song 1"))
    task.cancel()
    assert rec.identified is not None and rec.identified.track.track_id == ids[3]
    assert hits and ticks > 5  # the loop kept running while the CPU work happened


def test_cli_query_json_and_text(catalogue, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    settings, audio, ids = catalogue
    monkeypatch.setenv("SYNESTHETE_MODEL_CACHE_DIR", str(settings.model_cache_dir))
    note = degraded_excerpt(audio / f"{ids[11]}.mp3", tmp_path / "n.ogg", 10.0, 8.0, seed=11)
    assert cli.main(["--data-dir", str(settings.data_dir), "query", str(note), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["identified"]["track_id"] == ids[11] and len(out["results"]) == 5
    assert cli.main(["--data-dir", str(settings.data_dir), "similar", "Song 4"]) == 0
    text = capsys.readouterr().out
    assert "Because you picked: Band 4 – Song 4" in text and "https://open.spotify.com/search/" in text
    bad = tmp_path / "bad.mp3"
    bad.write_text("hello")
    assert cli.main(["--data-dir", str(settings.data_dir), "query", str(bad)]) == 2
    assert "doesn't look like audio" in capsys.readouterr().err


def test_the_build_fits_the_similarity_model_and_queries_use_it(catalogue, service: SynestheteService,
                                                                 tmp_path: Path) -> None:
    """Trained by default: the build leaves a fitted model whose vectors answer both paths."""
    settings, audio, ids = catalogue
    about = service.about()
    assert about["similarity"]["method"].startswith("pooled") and about["similarity"]["trained"]
    assert about["similarity"]["n_tracks"] == N_TRACKS
    assert service.similarity is not None and settings.similarity_model_path.exists()
    report = json.loads((settings.data_dir / "build_report.json").read_text())
    assert report["similarity"]["status"] in ("fitted", "unchanged")
    # a catalogue track's stored vector is the model applied to that track's descriptors
    from engine.descriptors import DescriptorStore, backbone_key

    store = DescriptorStore(settings.descriptors_db_path, read_only=True)
    try:
        descs = {d.track_key: d for d in store.iter(backbone_key(service.model_id))}
    finally:
        store.close()
    assert len(descs) == N_TRACKS
    key = next(iter(descs))
    stored = service.store.track_vectors([key])[key]
    d = descs[key]
    np.testing.assert_allclose(stored, service.similarity.vectors_from_stats(d.mean[None], d.std[None])[0], atol=1e-4)
    # a recording of no catalogue song: its track vector comes from the same model
    noise = audiogen.encode(audiogen.synthetic_track(77, 12.0), tmp_path / "other.mp3")
    rec = service.recommend(noise, diverse=False)
    assert len(rec.results) == 5
    assert all(-1.0 <= r.similarity <= 1.0 + 1e-6 for r in rec.results)


def test_discovery_rule_spreads_answers_over_artists(catalogue, service: SynestheteService) -> None:
    _, _, ids = catalogue
    rec = service.similar_to(ids[3])
    artists = [r.track.artist for r in rec.results]
    assert len(set(artists)) == 5  # six bands, one is the seed's: at most one slot
    assert artists.count(rec.seed.artist) <= 1
    raw = service.similar_to(ids[3], diverse=False)
    assert len(raw.results) == 5
    assert [r.similarity for r in raw.results] == sorted((r.similarity for r in raw.results), reverse=True)


def test_filters_apply_inside_the_search(catalogue, service: SynestheteService) -> None:
    from engine.errors import BadFilterError, NothingMatchesError
    from engine.filters import make_filter

    _, _, ids = catalogue
    rec = service.similar_to(ids[0], filters=make_filter("rock"))
    assert len(rec.results) == 5  # 10 rock tracks: five pass even though rock is a third of the catalogue
    assert all("Rock" in r.track.genres for r in rec.results)
    rec = service.similar_to(ids[0], filters=make_filter(popularity="20-24"), diverse=False)
    assert sorted(r.track.popularity for r in rec.results) == [20, 21, 22, 23, 24]
    with pytest.raises(NothingMatchesError) as e:
        service.similar_to(ids[0], filters=make_filter("polka"))
    assert "polka" in e.value.user_message
    with pytest.raises(BadFilterError):
        service.similar_to(ids[0], filters=make_filter(bpm="200-100"))


def test_about_after_a_build_needs_no_engine_and_says_what_the_engine_says(catalogue,
                                                                           service: SynestheteService) -> None:
    """issue 24: ``about`` opened the engine (torch, pymilvus: 3.3 s); the build leaves a snapshot."""
    import os
    import subprocess
    import sys

    settings, _, _ = catalogue
    code = ("import io, json, sys, contextlib; from engine import cli; buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf): rc = cli.main(['--data-dir', sys.argv[1], 'about', '--json'])\n"
            "print(json.dumps({'rc': rc, 'about': json.loads(buf.getvalue()),"
            " 'heavy': sorted(m for m in ('torch', 'pymilvus', 'scipy') if m in sys.modules)}))")
    env = {**os.environ, "SYNESTHETE_MODEL_CACHE_DIR": str(settings.model_cache_dir)}  # the build's settings
    out = subprocess.run([sys.executable, "-c", code, str(settings.data_dir)], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parent.parent, env=env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["rc"] == 0 and got["heavy"] == []
    assert got["about"] == json.loads(json.dumps(service.about()))


def test_the_similarity_table_and_the_product_agree(catalogue, service: SynestheteService, tmp_path: Path) -> None:
    """issue 29 step 3: bench/similarity_eval.py --index scores similar_to on the built index; its figures
    must match the default candidate fitted on all tracks from the bench's own cached features."""
    import importlib.util
    import subprocess
    import sys

    settings, audio, _ = catalogue
    root = Path(__file__).resolve().parent.parent
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "catalogue").symlink_to(audio)
    (corpus / "tracks.csv").write_bytes((audio.parent / "tracks.csv").read_bytes())
    feats = tmp_path / "feats"
    subprocess.run([sys.executable, str(root / "bench" / "similarity_features.py"), "--corpus", str(corpus),
                    "--out", str(feats)], check=True, timeout=600, capture_output=True)
    spec = importlib.util.spec_from_file_location("similarity_eval_e2e", root / "bench" / "similarity_eval.py")
    se = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = se  # dataclasses look their module up while the module runs
    spec.loader.exec_module(se)
    import argparse

    args = argparse.Namespace(corpus=[corpus], features=[feats], index=[settings.data_dir], folds=3, seed=0,
                              max_patches=0, spread_weights=[0.5], no_musly=True, json=None)
    rows = se.run(args)["corpora"]["corpus"]["rows"]
    product = rows["product: similar_to on the built index"]
    table = next(r for name, r in rows.items() if name.endswith("fitted on all tracks"))
    assert product["n_queries"] == N_TRACKS
    for figure in ("artist_p5", "genre_p5", "genre_p5_artist_filtered"):
        assert abs(product[figure] - table[figure]) <= 0.02, (figure, product, table)


def test_mutual_proximity_is_a_setting_that_reranks_what_the_build_indexed(catalogue,
                                                                           service: SynestheteService) -> None:
    """issue 29 step 3: the build writes mutual proximity's statistics; SYNESTHETE_SIMILARITY_HUBNESS=mp
    re-ranks the cosine candidates by them (engine.hubness), cosine still shown."""
    import dataclasses

    from engine.hubness import MutualProximity

    settings, _, ids = catalogue
    mp = MutualProximity.load(settings.hubness_path)
    assert mp.n == N_TRACKS and mp.model_sha == service.similarity.sha
    mp_settings = dataclasses.replace(settings, similarity_hubness="mp")
    svc = SynestheteService(mp_settings)
    try:
        assert svc.hubness is not None and "mutual proximity" in svc.about()["similarity"]["hubness"]
        seed = service.catalogue.get(ids[0])
        keys = [t.track_key for t in service.catalogue.all_tracks() if t.track_key != seed.track_key]
        vecs = service.store.track_vectors(keys + [seed.track_key])
        q = vecs[seed.track_key]
        cos = np.array([float(vecs[k] @ q) for k in keys])
        want = np.array(keys)[np.argsort(-mp.scores(q, np.stack([vecs[k] for k in keys]), cos))[:5]]
        got = svc.similar_to(ids[0], k=5, diverse=False)
        assert {r.track.track_key for r in got.results} == set(want.tolist())
        assert all(abs(r.similarity - float(vecs[r.track.track_key] @ q)) < 1e-3 for r in got.results)
    finally:
        svc.close()
    assert service.hubness is None  # off by default


def test_a_catalogue_without_spotify_ids_says_so_for_a_link(catalogue, service: SynestheteService) -> None:
    """issue 31: this catalogue was built --not-spotify; its own ids can look like Spotify ids, so a
    link matching one is a coincidence, and an unknown link is not 'a song I lack' but 'no Spotify here'."""
    from engine.links import NO_SPOTIFY_TRACKS

    _, _, ids = catalogue
    assert service.catalogue.has_spotify_ids() is False
    for link in (f"https://open.spotify.com/track/{ids[0]}", f"spotify:track:{'Z' * 22}"):
        with pytest.raises(TrackNotFoundError) as err:
            service.similar_to(link)
        assert err.value.user_message == NO_SPOTIFY_TRACKS
    assert service.similar_to(ids[0]).seed.track_id == ids[0]  # the id itself still works


def test_radio_from_a_recording_on_the_command_line(catalogue, service: SynestheteService, capsys) -> None:
    """issue 31 step 2: `synesthete radio note.mp3` starts at the song the recording is."""
    settings, audio, ids = catalogue
    rc = cli.main(["--data-dir", str(settings.data_dir), "radio", str(audio / f"{ids[4]}.mp3"), "-n", "8", "--links"])
    out = capsys.readouterr()
    assert rc == 0 and "Heard: Band 4 – Song 4" in out.err
    links = out.out.split()
    assert 1 <= len(links) <= 8 and len(set(links)) == len(links)
    assert all(x.startswith("https://open.spotify.com/search/") for x in links)  # a --not-spotify catalogue
    assert not any(x.endswith("Band%204%20Song%204") for x in links)
