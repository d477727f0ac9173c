"""The index builder's bookkeeping, through the real pipeline.

Real ffmpeg, real milvus-lite and SQLite in tmp dirs, real spawned worker
processes; only the backbone is a toy (tests/tinymodel.py) so embedding is
instant.  What matters here: after any interruption the three stores (Milvus
vectors, fingerprints, catalogue marks) agree, nothing is duplicated, and a
rerun does exactly the work that is left.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.catalogue import CatalogueDB, track_key_for
from engine.fingerprint.backends import open_fingerprints
from engine.settings import Settings
from engine.store import VectorStore
from index_builder import cli
from index_builder.build import BuildOptions, DiskFullError, audio_sig, run_build
from index_builder.locking import BuildLock, BuildLockedError
from tests import tinymodel
from tests.audiogen import encode, synthetic_track

REPO = Path(__file__).resolve().parents[1]
TINY = "tests.tinymodel:make_embedder"
SECONDS = 8.0


def make_corpus(root: Path, n: int = 6) -> tuple[Path, Path]:
    """n tracks named <track_id>.ogg, one 'Artist - Title.mp3', a row without audio,
    a file without a row and a malformed CSV row."""
    audio = root / "audio"
    audio.mkdir(parents=True)
    rows = ["genre,artist_name,track_name,track_id,popularity,duration_ms"]
    for i in range(n):
        tid = f"trk{i:03d}"
        rows.append(f"pop,Artist {i},Song {i},{tid},{i * 10},8000")
        name = f"{tid}.ogg" if i != n - 1 else f"Artist {i} - Song {i}.mp3"
        encode(synthetic_track(i, SECONDS, sr=16000), audio / name, sr=16000)
    rows.append("pop,Nobody,No Audio,noaudio1,5,1000")
    rows.append("pop,Broken,Row,with,too,many,fields")
    encode(synthetic_track(99, SECONDS, sr=16000), audio / "stray - unknown.ogg", sr=16000)
    csv = root / "tracks.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv, audio


def settings_for(root: Path, backend: str = "sqlite") -> Settings:
    return Settings(data_dir=root / "data", fingerprint_backend=backend)


def build(settings: Settings, csv: Path | None, audio: Path, **kw) -> object:
    opts = dict(csv=csv, audio=audio, not_spotify=True, workers=1, embedder=TINY, batch_size=2,
                use_tags=False)
    opts.update(kw)
    return run_build(settings, BuildOptions(**opts))


def index_state(settings: Settings, embedder: str = TINY) -> dict:
    """Everything the three stores hold, and whether they agree."""
    emb = getattr(tinymodel, embedder.split(":")[1])(settings)
    store = VectorStore(settings.resolved_milvus_uri, emb.model_id, emb.dim)
    cat = CatalogueDB(settings.catalogue_db_path)
    fp = open_fingerprints(settings, store, read_only=False)
    try:
        store.check_ready()
        marks = cat.indexed_state()
        with sqlite3.connect(settings.catalogue_db_path) as c:
            n_seg_marked = c.execute("SELECT COALESCE(SUM(n_segments),0) FROM indexed").fetchone()[0]
        return dict(milvus=set(store.all_track_keys()), segments=store.count_segments(),
                    fp=fp.track_keys(), marked=set(marks), n_seg_marked=n_seg_marked,
                    catalogue=cat.count())
    finally:
        store.close(), cat.close(), fp.close()


def assert_consistent(st: dict, n: int) -> None:
    assert len(st["marked"]) == n
    assert st["milvus"] == st["fp"] == st["marked"]
    # no duplicated segments: Milvus holds exactly what the marks say
    assert st["segments"] == st["n_seg_marked"]


@pytest.mark.parametrize("backend", ["sqlite", "milvus"])
def test_build_rerun_change_and_remove(tmp_path: Path, backend: str) -> None:
    """Incremental builds keep vectors, landmarks and marks in step, on both landmark backends."""
    csv, audio = make_corpus(tmp_path)
    s = settings_for(tmp_path, backend)
    r = build(s, csv, audio)
    assert r.indexed == 6 and not r.failed
    assert r.match_rules == {"id": 5, "filename": 1}
    assert r.rows_without_audio == ["noaudio1"]
    assert [f["path"] for f in r.files_without_rows] == [str(audio / "stray - unknown.ogg")]
    assert len(r.csv_problems) == 1 and "fields" in r.csv_problems[0]["problem"]
    assert (s.data_dir / "build_report.json").is_file()

    # unchanged: nothing to do
    r = build(s, csv, audio)
    assert (r.indexed, r.skipped_unchanged, r.removed, r.to_embed) == (0, 6, 0, 0)

    # one file changed, one removed
    changed = audio / "trk001.ogg"
    encode(synthetic_track(42, SECONDS, sr=16000), changed, sr=16000)
    (audio / "trk002.ogg").unlink()
    r = build(s, csv, audio)
    assert (r.indexed, r.skipped_unchanged, r.removed) == (1, 4, 1)
    st = index_state(s)
    assert_consistent(st, 5)
    assert track_key_for("trk002") not in st["milvus"]
    assert st["catalogue"] == 7  # the row without audio is still searchable by name
    cat = CatalogueDB(s.catalogue_db_path)
    assert cat.indexed_state()[track_key_for("trk001")][0] == audio_sig(changed)
    cat.close()
    assert r.calibration["status"] == "too_small"  # 5 tracks: the safe rule answers
    # a query through the service finds the changed song on either backend
    from engine.service import SynestheteService

    svc = SynestheteService(s, embedder=tinymodel.make_embedder(s))
    try:
        rec = svc.recommend(changed)
        assert rec.identified is not None and rec.identified.track.track_id == "trk001"
        assert svc.about()["identification"]["calibrated"] is False
    finally:
        svc.close()


@pytest.mark.slow
def test_model_change_recreates_collections(tmp_path: Path) -> None:
    csv, audio = make_corpus(tmp_path, n=3)
    s = settings_for(tmp_path)
    assert build(s, csv, audio).indexed == 3
    r = build(s, csv, audio, embedder="tests.tinymodel:make_embedder_v2")
    assert r.recreated and "model changed" in r.recreate_reason
    assert r.indexed == 3
    assert_consistent(index_state(s, "tests.tinymodel:make_embedder_v2"), 3)


def test_bad_files_are_reported_not_fatal(tmp_path: Path) -> None:
    import numpy as np

    csv, audio = make_corpus(tmp_path, n=3)
    rows = csv.read_text().splitlines()
    bad = {"zero": "zero.mp3", "text": "text.mp3", "silent": "silent.ogg", "short": "short.ogg"}
    (audio / "zero.mp3").write_bytes(b"")
    (audio / "text.mp3").write_text("this is not audio at all, just a renamed text file\n" * 20)
    encode(np.zeros(16000 * 5, np.float32), audio / "silent.ogg", sr=16000)
    encode(synthetic_track(5, 1.0, sr=16000), audio / "short.ogg", sr=16000)
    rows += [f"pop,Bad,{k},{k},1,1000" for k in bad]
    csv.write_text("\n".join(rows) + "\n")
    s = settings_for(tmp_path)
    r = build(s, csv, audio)
    kinds = {f.track_id: f.kind for f in r.failed}
    assert kinds == {"zero": "empty", "text": "not_audio", "silent": "too_short", "short": "too_short"}, kinds
    assert all(f.reason and f.detail for f in r.failed)
    assert r.indexed == 3
    # unchanged bad files are not decoded again
    r = build(s, csv, audio)
    assert (r.indexed, r.failed_unchanged, len(r.failed)) == (0, 4, 0)


@pytest.mark.slow
def test_worker_crash_is_survived(tmp_path: Path) -> None:
    """A file that kills its worker process (think: a segfault in a codec) is marked bad;
    the tracks that were in flight with it are retried and indexed."""
    csv, audio = make_corpus(tmp_path, n=4)
    encode(synthetic_track(6, tinymodel.CRASH_SECONDS, sr=16000), audio / "crash.ogg", sr=16000)
    csv.write_text(csv.read_text() + "pop,Bad,crash,crash,1,1000\n")
    s = settings_for(tmp_path)
    r = build(s, csv, audio, workers=2)
    assert {f.track_id: f.kind for f in r.failed} == {"crash": "worker_crash"}
    assert r.indexed == 4 and r.worker_restarts >= 1
    assert_consistent(index_state(s), 4)


def test_disk_full_keeps_index_consistent_and_resumes(tmp_path: Path, monkeypatch) -> None:
    csv, audio = make_corpus(tmp_path)
    s = settings_for(tmp_path)
    real = VectorStore.upsert_tracks
    calls = {"n": 0}

    def flaky(self, items):
        calls["n"] += 1
        if calls["n"] == 2:  # second batch: the disk fills up mid-write
            real(self, items[:1])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, items)

    monkeypatch.setattr(VectorStore, "upsert_tracks", flaky)
    with pytest.raises(DiskFullError):
        build(s, csv, audio)
    monkeypatch.setattr(VectorStore, "upsert_tracks", real)
    st = index_state(s)
    assert len(st["marked"]) == 2  # only the first batch is marked
    assert st["marked"] <= st["milvus"]
    r = build(s, csv, audio)
    assert (r.indexed, r.skipped_unchanged) == (4, 2)
    assert_consistent(index_state(s), 6)


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path: Path) -> None:
    csv, audio = make_corpus(tmp_path, n=10)
    s = settings_for(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "index_builder", "--data-dir", str(s.data_dir), "build", "--csv", str(csv),
           "--audio", str(audio), "--not-spotify", "--no-tags", "--workers", "1", "--batch-size", "1",
           "--embedder", TINY]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    marked = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if s.catalogue_db_path.exists():
                try:
                    with sqlite3.connect(f"file:{s.catalogue_db_path}?mode=ro", uri=True, timeout=1) as c:
                        marked = c.execute("SELECT COUNT(*) FROM indexed").fetchone()[0]
                except sqlite3.Error:
                    marked = 0
            if marked >= 2:
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the build and its worker, mid-way
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    assert 2 <= marked < 10
    r = build(s, csv, audio)
    assert r.indexed + r.skipped_unchanged == 10
    assert r.skipped_unchanged >= 2
    assert_consistent(index_state(s), 10)


def test_lock_held_and_user_errors_exit_2(tmp_path: Path, capsys) -> None:
    csv, audio = make_corpus(tmp_path, n=1)
    s = settings_for(tmp_path)
    base = ["--data-dir", str(s.data_dir), "build", "--audio", str(audio), "--not-spotify",
            "--embedder", TINY, "--workers", "1"]
    with BuildLock(s.data_dir / "build.lock"):
        with pytest.raises(BuildLockedError):
            build(s, csv, audio)
        assert cli.main(base + ["--csv", str(csv)]) == 2
    assert "Another index build" in capsys.readouterr().err

    bad = tmp_path / "bad.csv"
    bad.write_text("name,artist\nx,y\n")
    assert cli.main(base + ["--csv", str(bad)]) == 2
    assert "missing required column" in capsys.readouterr().err
    assert cli.main(base[:2] + ["build"]) == 2


def test_locked_milvus_maps_to_clear_message(tmp_path: Path, capsys, monkeypatch) -> None:
    from engine.errors import StoreLockedError

    csv, audio = make_corpus(tmp_path, n=1)

    def locked(self, *a, **kw):
        raise StoreLockedError("milvus-lite database is opened by another process")

    monkeypatch.setattr(VectorStore, "__init__", locked)
    rc = cli.main(["--data-dir", str(tmp_path / "data"), "build", "--csv", str(csv), "--audio", str(audio),
                   "--not-spotify", "--embedder", TINY, "--workers", "1", "--no-tags"])
    assert rc == 2
    assert "the bot or another build is using the index; stop it first" in capsys.readouterr().err.lower()
