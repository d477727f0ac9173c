"""What a newcomer meets in the first ten minutes (issue 24): packaging, words, exit codes, order."""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np

from engine import cli as engine_cli
from engine.calibration import held_out_text, kind_text
from engine.catalogue import CatalogueDB, SearchHit, Track, natural_key
from engine.startup import EXIT_OK, command_path, run_console
from index_builder.report import BuildReport, calibration_line, own_peak_rss_mb

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_is_an_spdx_string_so_setuptools_does_not_warn() -> None:
    """A TOML-table license printed 52 deprecation lines on every install (setuptools >= 77 wants a string)."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "MIT"
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in meta["build-system"]["requires"])


def test_the_readme_test_command_is_the_one_ci_runs_and_it_installs_test_only_tools() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "./run.sh --test" in readme and "./run.sh --test" in (ROOT / ".ci/run").read_text()
    setup = (ROOT / "scripts/setup.sh").read_text()
    # Chromium and the Milvus server venv are installed only for the tests
    chromium = setup.index("need_apt+=(chromium)")
    assert 'if [ "$TEST" = 1 ]' in setup[:chromium].splitlines()[-2]
    assert setup.index('if [ "$TEST" = 1 ]; then\n  if') < setup.index("milvus==2.3.5")
    for opt in ("SKIP_BROWSER", "SKIP_MILVUS_SERVER", "SKIP_APT"):
        assert opt in readme


def test_equal_matches_list_in_natural_order() -> None:
    """Measured: "wrzone" listed Track 25, 23, 14, ... (equal match, equal popularity, no visible order)."""
    assert natural_key("Track 2") < natural_key("Track 10") < natural_key("Track 25")
    assert sorted(["Ambient 10", "Ambient 9", "ambient 1"], key=natural_key) == ["ambient 1", "Ambient 9", "Ambient 10"]


def test_a_typo_search_lists_a_numbered_album_in_order(tmp_path: Path) -> None:
    db = CatalogueDB(tmp_path / "c.sqlite")
    order = [25, 3, 14, 1, 23, 10, 2]
    db.upsert_tracks([Track(f"id{n:020d}", f"Track {n}", "Warzone 2100 OST", ["electronic"], 0) for n in order])
    names = [h.track.name for h in db.search("wrzone", limit=25)]
    assert names == [f"Track {n}" for n in sorted(order)]
    db.close()


def test_a_closed_pipe_is_not_a_failure(capsys) -> None:
    """``synesthete search x | head`` exited 1, "a failure on our side"."""
    def body(args, settings):
        raise BrokenPipeError(32, "Broken pipe")

    parser = argparse.ArgumentParser()
    assert run_console("synesthete", parser, body, []) == EXIT_OK
    assert capsys.readouterr().err == ""


def test_search_into_a_pipe_that_closes_exits_0(tmp_path: Path) -> None:
    """The real thing: the installed CLI writing more lines than ``head -n 1`` reads."""
    db = CatalogueDB(tmp_path / "catalogue.sqlite")
    db.upsert_tracks([Track(f"id{n:020d}", f"Song {n} " + "x" * 200, "A", ["pop"], 50) for n in range(25)])
    db.close()
    script = Path(sys.executable).parent / "synesthete"
    # the reader is gone before the CLI writes (it starts in ~0.1 s, the reader exits at once)
    res = subprocess.run(["bash", "-c", f"set -o pipefail; {script} --env-file /dev/null --data-dir {tmp_path} "
                          "search song -n 25 | (exec 0<&-; true)"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stderr == "", (res.returncode, res.stderr)


def test_similar_says_which_track_it_used_and_what_else_matched() -> None:
    hits = [SearchHit(Track(f"id{n}", f"Track {n}", "Warzone 2100 OST", ["electronic"], 0), 90.0) for n in (2, 20, 12)]
    out = io.StringIO()
    engine_cli._say_which(hits, out)
    text = out.getvalue()
    assert 'Using "Warzone 2100 OST – Track 2" (id=id2); 2 more matched:' in text
    assert "Track 20  id=id20" in text and "Track 12  id=id12" in text and "--id ID" in text
    out = io.StringIO()
    engine_cli._say_which(hits[:1], out)
    assert out.getvalue() == ""  # one match: nothing to say


def test_about_prints_one_field_per_line_in_words(capsys) -> None:
    measured = {"phone3": {"n": 36, "says_right": 0.6111, "says_wrong": 0.0, "says_unknown": 0.0278},
                "clean8": {"n": 36, "says_right": 1.0, "says_wrong": 0.0, "says_unknown": 0.0}}
    assert kind_text("phone3") == "phone-like 3 s" and kind_text("clean8") == "clean 8 s"
    assert kind_text("odd") == "odd"
    lines = held_out_text(measured)
    assert lines[1] == "phone-like 3 s: right song named 61.1%, wrong song 0.0%, a song it lacks named as another 2.8% (n=36)"
    assert not any("phone3" in x or "0.0278" in x for x in lines)
    engine_cli._print_about({"tracks": 36, "identification": {"calibrated": True, "status": "calibrated on 144",
                                                              "held_out": lines}}, as_json=False)
    out = capsys.readouterr().out.splitlines()
    assert out[1].strip() == "identification:" and out[2].strip() == "calibrated: True"
    assert out[3].strip() == "status: calibrated on 144" and out[4].strip() == "held out:"
    assert out[5].strip().startswith("clean 8 s: right song named 100.0%") and out[6].strip().startswith("phone-like 3 s")


def test_the_build_summary_reads_as_sentences() -> None:
    r = BuildReport(similarity={"status": "fitted", "method": "pooled musicnn statistics, fitted on the catalogue",
                                "tracks": 36, "seconds": 0.4, "n_components": 35},
                    calibration={"status": "fitted", "message": "calibrated on 144 degraded self-queries of 36 tracks"})
    text = r.summary()
    assert "fitted on 36 tracks" not in text and "fitted on the catalogue; 36 tracks" in text
    assert "identification: calibrated on 144 degraded self-queries of 36 tracks" in text
    assert calibration_line({"status": "failed", "message": "boom"}) == "identification: calibration failed: boom"
    assert calibration_line({"status": "unchanged", "message": "already calibrated"}) == \
        "identification: already calibrated"


def test_the_build_summary_separates_the_index_from_the_fixed_calibration() -> None:
    """The throughput that grows with the catalogue is the index's; the calibration's budget is fixed."""
    r = BuildReport(audio_seconds=3600.0, elapsed_s=90.0, index_elapsed_s=60.0, workers=2)
    assert r.x_realtime == 40.0 and r.x_realtime_index == 60.0
    assert r.to_dict()["x_realtime_index"] == 60.0
    assert "1.00 h in 90.0 s = 40.0x real time (the index in 60.0 s = 60.0x, then the calibration; 2 workers)" in r.summary()
    no_calibration = BuildReport(audio_seconds=3600.0, elapsed_s=60.2, index_elapsed_s=60.0, workers=2).summary()
    assert "the index in" not in no_calibration and "= 59.8x real time (2 workers)" in no_calibration


def _child_peak(q) -> None:
    q.put(own_peak_rss_mb())


def test_a_spawned_worker_reports_its_own_peak_memory_not_its_parents() -> None:
    """Main and worker peak RSS read identical to the kilobyte: a child inherits the parent's high-water mark."""
    ballast = np.ones(400 * 2**20 // 8)  # 400 MB touched in this process
    main = own_peak_rss_mb()
    q = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(target=_child_peak, args=(q,))
    p.start()
    child = q.get(timeout=120)
    p.join(timeout=60)
    assert main > 400 and child < main - 300, (main, child)
    del ballast


def test_try_next_names_a_command_the_shell_finds(monkeypatch, tmp_path) -> None:
    scripts = Path(sys.executable).parent
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.chdir(tmp_path)
    assert command_path("synesthete") == str(scripts / "synesthete")  # not on PATH: the full path
    monkeypatch.setenv("PATH", f"{scripts}{os.pathsep}/usr/bin")
    assert command_path("synesthete") == "synesthete"
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.chdir(scripts.parent.parent)  # e.g. the project root: a relative path
    assert command_path("synesthete") == str((scripts / "synesthete").relative_to(scripts.parent.parent))


def test_pymilvus_failures_are_not_logged_twice() -> None:
    """Issue 30: pymilvus logged each failed RPC at ERROR with a traceback; the store logs state changes."""
    import logging

    from engine.startup import quiet_noisy_loggers

    quiet_noisy_loggers(logging.INFO)
    assert not logging.getLogger("pymilvus.decorators").isEnabledFor(logging.ERROR)
    quiet_noisy_loggers(logging.DEBUG)
    assert logging.getLogger("pymilvus.decorators").isEnabledFor(logging.ERROR)
    quiet_noisy_loggers(logging.WARNING)


def _snapshot_catalogue(tmp_path: Path):
    from engine.settings import Settings

    settings = Settings(data_dir=tmp_path / "data")
    db = CatalogueDB(settings.catalogue_db_path)
    db.upsert_tracks([Track(f"id{n:020d}", f"Track {n}", "Band", ["rock"], 0) for n in range(3)])
    db.set_meta("built_at", "2026-12-07T10:00:00+00:00")
    db.close()
    return settings


def test_about_answers_from_the_snapshot_while_nothing_it_depends_on_changed(tmp_path: Path, capsys) -> None:
    """``about`` took 3.3 s (it opened the engine); the snapshot answers it, live counts included."""
    from engine.about_snapshot import read_snapshot, write_snapshot

    settings = _snapshot_catalogue(tmp_path)
    assert read_snapshot(settings) is None  # never written: the engine answers
    engine_cli_info = {"tracks": 99, "indexed_tracks": 99, "model_id": "m1", "identification": {"calibrated": False},
                       "index_built": "old", "milvus": "milvus-lite"}
    write_snapshot(settings, engine_cli_info)
    info = read_snapshot(settings)
    # the catalogue's counts and build date are live; the rest is the engine's answer, in its order
    assert info == {"tracks": 3, "indexed_tracks": 0, "model_id": "m1", "identification": {"calibrated": False},
                    "index_built": "2026-12-07T10:00:00+00:00", "milvus": "milvus-lite"}
    assert list(info) == list(engine_cli_info)
    assert engine_cli.main(["--data-dir", str(settings.data_dir), "about", "--json"]) == EXIT_OK
    assert '"model_id": "m1"' in capsys.readouterr().out


def test_a_stale_about_snapshot_is_not_used(tmp_path: Path) -> None:
    """A setting, a model file or a remote engine: each makes the snapshot untrustworthy."""
    import dataclasses

    from engine.about_snapshot import read_snapshot, snapshot_path, write_snapshot

    settings = _snapshot_catalogue(tmp_path)
    write_snapshot(settings, {"model_id": "m1"})
    assert read_snapshot(settings) is not None
    assert read_snapshot(dataclasses.replace(settings, similarity_models="msd")) is None
    assert read_snapshot(dataclasses.replace(settings, engine_url="http://127.0.0.1:1")) is None
    settings.identify_calibration_path.write_text("{}")  # a calibrate run wrote a new calibration
    assert read_snapshot(settings) is None
    write_snapshot(settings, {"model_id": "m2"})
    assert read_snapshot(settings)["model_id"] == "m2"
    snapshot_path(settings).write_text("{not json")
    assert read_snapshot(settings) is None


def test_a_snapshot_written_with_the_key_of_older_models_is_stale(tmp_path: Path) -> None:
    """Review finding: an engine started before a rebuild answers about its old models; written under
    the key of the files it loaded, the snapshot is stale for the new files instead of wrong."""
    from engine.about_snapshot import read_snapshot, snapshot_key, write_snapshot

    settings = _snapshot_catalogue(tmp_path)
    old_key = snapshot_key(settings)  # what the running engine loaded
    settings.similarity_model_path.write_bytes(b"a rebuild's new model")
    write_snapshot(settings, {"model_id": "old"}, key=old_key)
    assert read_snapshot(settings) is None
