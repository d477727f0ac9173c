"""The offset verification after the landmark stage, in the index and in the decision (issue 23).

The index keeps each track's single peaks and verifies its candidates at their offset; the
decision names the best landmark candidate on that evidence alone only beyond a 1-in-10^10
chance; an index without peaks (built before them, or the Milvus backend) decides as before
and says so in ``about``; a build re-indexes the tracks that lack peaks.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from engine.fingerprint.index import FingerprintIndex, FingerprintMatch
from engine.fingerprint.landmarks import extract_fingerprint
from engine.fingerprint.peaks import CHANCE_SHARE, peak_surprise
from engine.identify import (MAX_PROBABILITY, VERIFIED_SURPRISE, Evidence, decide, safe_rule,
                             verification_surprise, verified_rule)
from tests.audiogen import SR, synthetic_track


def _excerpt_index(path: Path, with_peaks: bool = True) -> tuple[FingerprintIndex, dict[int, np.ndarray]]:
    tracks = {k: synthetic_track(k, 20.0) for k in (1, 2, 3)}
    idx = FingerprintIndex(path, verify=True)
    for k, x in tracks.items():
        fp = extract_fingerprint(x, SR)
        idx.add_landmarks(k, fp.hashes, fp.times, 20.0, peaks=(fp.peak_t, fp.peak_f) if with_peaks else None)
    return idx, tracks


def test_the_index_verifies_its_candidates_at_their_offset(tmp_path: Path) -> None:
    idx, tracks = _excerpt_index(tmp_path / "fp.sqlite")
    try:
        assert idx.has_peaks() and idx.keys_without_peaks() == set()
        rng = np.random.default_rng(3)
        q = tracks[2][5 * SR: 13 * SR] + rng.normal(0, 0.02, 8 * SR).astype(np.float32)
        matches = idx.match(q, SR, top_k=3)
        assert matches[0].track_key == 2 and matches[0].offset_s == pytest.approx(5.0, abs=0.05)
        right = matches[0].peaks_matched / matches[0].peaks_total
        assert right > 0.3
        assert all(m.peaks_matched is not None and m.peaks_matched / max(m.peaks_total, 1) < right / 2
                   for m in matches[1:])
        ev = Evidence(tuple(matches), (), 0, 8.0)
        assert verification_surprise(ev, 2) > VERIFIED_SURPRISE > verification_surprise(ev, matches[1].track_key)
        idx.remove_track(2)
        assert idx.peak_codes(2) is None
    finally:
        idx.close()


def test_an_index_without_its_peaks_says_so_and_names_nothing(tmp_path: Path) -> None:
    """Landmark version 2 scores candidates with pairs derived from the peaks: without them, no answer, never a wrong one."""
    idx, tracks = _excerpt_index(tmp_path / "fp.sqlite")
    idx.close()
    conn = sqlite3.connect(tmp_path / "fp.sqlite")
    conn.execute("DROP TABLE peaks")  # a damaged index, or one whose build was stopped half-way
    conn.commit()
    conn.close()
    with FingerprintIndex(tmp_path / "fp.sqlite", read_only=True, verify=True) as old:
        assert not old.has_peaks() and old.keys_without_peaks() == {1, 2, 3}
        m = old.match(tracks[1][2 * SR: 10 * SR], SR)
        assert m == []
        assert verified_rule(Evidence(tuple(m), (), 0, 8.0)) is None  # nothing verified: nothing added
    with FingerprintIndex(tmp_path / "fp.sqlite") as writer:  # a build adds the table; the tracks still lack peaks
        assert writer.keys_without_peaks() == {1, 2, 3}
    unpaired, _ = _excerpt_index(tmp_path / "b.sqlite", with_peaks=False)
    with unpaired:
        assert not unpaired.has_peaks()


def _match(key: int, score: int, conf: float, peaks: tuple[int, int] | None) -> FingerprintMatch:
    return FingerprintMatch(key, score, 3.0, conf, 900, None if peaks is None else peaks[0], peaks[1] if peaks else 0)


def test_the_verification_names_a_weak_landmark_winner_only_far_beyond_chance() -> None:
    # 150 of 450 peaks land (a third) while the other candidate's land at chance (18/450 = 4%)
    sure = Evidence((_match(3, 12, 0.3, (150, 450)), _match(5, 9, 0.0, (18, 450))), (), 0, 10.0)
    assert safe_rule(sure) is None  # landmark margin 0.3 < 0.5: before, nothing was said
    d = decide(sure, None, threshold=0.9)
    assert d is not None and d.track_key == 3 and d.confidence == MAX_PROBABILITY and d.offset_s == 3.0
    assert d.level == "certain" and d.surprise == pytest.approx(peak_surprise(150, 450, 18 / 450))
    # the chance level is the other candidate's share: held notes that hit 25% everywhere prove nothing
    tonal = Evidence((_match(3, 12, 0.3, (150, 450)), _match(5, 9, 0.0, (112, 450))), (), 0, 10.0)
    assert verification_surprise(tonal, 3) < VERIFIED_SURPRISE and decide(tonal, None, threshold=0.9) is None
    # a few hits more than random peaks give is not enough
    weak = Evidence((_match(3, 12, 0.3, (25, 450)),), (), 0, 10.0)
    assert peak_surprise(25, 450, CHANCE_SHARE) < VERIFIED_SURPRISE and decide(weak, None, threshold=0.9) is None
    # only the best landmark candidate can be named this way
    second = Evidence((_match(5, 12, 0.3, (18, 450)), _match(3, 9, 0.0, (150, 450))), (), 0, 10.0)
    assert decide(second, None, threshold=0.9) is None


def test_a_clear_landmark_answer_is_unchanged_by_the_verification() -> None:
    strong = Evidence((_match(3, 60, 0.8, (150, 450)), _match(5, 9, 0.0, (18, 450))), (), 0, 10.0)
    unverified = Evidence((_match(3, 60, 0.8, None), _match(5, 9, 0.0, None)), (), 0, 10.0)
    assert decide(strong, None, threshold=0.9) == safe_rule(strong) == decide(unverified, None, threshold=0.9)
    assert decide(strong, None, threshold=0.9).confidence == pytest.approx(0.8)


def test_a_threshold_above_what_it_can_report_turns_the_verification_off() -> None:
    sure = Evidence((_match(3, 12, 0.3, (150, 450)), _match(5, 9, 0.0, (18, 450))), (), 0, 10.0)
    assert decide(sure, None, threshold=MAX_PROBABILITY).track_key == 3
    assert decide(sure, None, threshold=0.9995) is None  # its answers carry MAX_PROBABILITY: never above


def test_off_by_default_the_build_keeps_peaks_and_redoes_the_tracks_without(tmp_path: Path) -> None:
    """Encoded files through the real builder (ffmpeg, the tiny model): the setting decides, the peaks are kept."""
    from engine.service import SynestheteService
    from tests import tinymodel
    from tests.test_build import build, make_corpus, settings_for

    csv, audio = make_corpus(tmp_path)
    s = settings_for(tmp_path)
    assert s.identify_verification is False
    assert build(s, csv, audio).indexed == 6
    with FingerprintIndex(s.fingerprint_db_path, read_only=True) as idx:
        assert idx.has_peaks()  # kept either way: turning the verification on needs no rebuild
    conn = sqlite3.connect(s.fingerprint_db_path)
    conn.execute("DELETE FROM peaks")  # as a damaged index
    conn.commit()
    conn.close()
    svc = SynestheteService(s, embedder=tinymodel.make_embedder(s))
    try:
        assert "cannot be named: run `synesthete-index build`" in svc.about()["identification"]["landmarks"]
    finally:
        svc.close()
    assert build(s, csv, audio).indexed == 6  # they cannot be named without: done again
    svc = SynestheteService(s, embedder=tinymodel.make_embedder(s))
    try:
        assert svc.about()["identification"]["offset_verification"].startswith("off (SYNESTHETE_IDENTIFY_VERIFICATION")
        assert svc.fingerprints.verify_matches is False
    finally:
        svc.close()


def test_turned_on_a_build_indexes_again_the_tracks_without_peaks(tmp_path: Path) -> None:
    from engine.service import SynestheteService
    from tests import tinymodel
    from tests.test_build import build, make_corpus, settings_for

    csv, audio = make_corpus(tmp_path)
    s = settings_for(tmp_path).replace(identify_verification=True)
    assert build(s, csv, audio).indexed == 6
    conn = sqlite3.connect(s.fingerprint_db_path)
    conn.execute("DELETE FROM peaks WHERE track_key = (SELECT min(track_key) FROM peaks)")
    conn.commit()
    svc = SynestheteService(s, embedder=tinymodel.make_embedder(s))
    try:  # a build that adds them was interrupted after 5 of 6
        assert svc.about()["identification"]["offset_verification"].startswith("partly on: 5 of 6 tracks")
    finally:
        svc.close()
    conn.execute("DELETE FROM peaks")
    conn.commit()
    conn.close()
    svc = SynestheteService(s, embedder=tinymodel.make_embedder(s))
    try:
        assert svc.about()["identification"]["offset_verification"].startswith("off: the landmark index keeps no peaks")
        rec = svc.recommend(audio / "trk003.ogg")  # without its peaks no song is named: no wrong answer
        assert rec.identified is None and rec.results
        assert "6 of 6 tracks have no stored peaks and cannot be named" in svc.about()["identification"]["landmarks"]
        assert svc.landmark_candidates(svc.decode(audio / "trk003.ogg")) == []
    finally:
        svc.close()
    assert build(s, csv, audio).indexed == 6  # every track without peaks was done again
    svc = SynestheteService(s, embedder=tinymodel.make_embedder(s))
    try:
        assert svc.about()["identification"]["offset_verification"].startswith("on:")
        cands = svc.landmark_candidates(svc.decode(audio / "trk003.ogg"))
        assert cands[0].peaks_matched is not None and cands[0].peaks_matched / cands[0].peaks_total > 0.3
    finally:
        svc.close()
