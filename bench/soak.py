"""Soak test: many mixed requests from concurrent clients against one open service.

    python bench/soak.py --data-dir DIR [--requests 1000] [--clients 6] [--max-seconds 900]
                         [--http-fraction 0.25] [--decode-timeout 5] [--json out.json]

Drives ``SynestheteService`` through its async wrappers (``arecommend``,
``asimilar_to``, ``asearch_tracks``) from ``--clients`` concurrent clients on one
event loop, and a share of the same requests (``--http-fraction``) through the
real HTTP endpoints of ``web.app.create_app`` served in-process on 127.0.0.1.

The mix (seeded, ``--seed``): ~40% voice notes, ~30% similar_to, ~25% name search,
~5% bad inputs.

* Voice notes: a pool of ~20 prepared up front, 10-s and 30-s excerpts cut from
  catalogue tracks at random places, degraded with
  ``index_builder.augment.phone_degrade`` (room, noise, phone band, level) and
  encoded as Ogg/Opus 24 kbit/s by ffmpeg, plus the demo's own voice note. Each has
  its expected track id; the answer counts as correct when the identified track is
  that track (or a duplicate of it: same dedup key).
* similar_to of random catalogue ids: a non-empty answer without the seed, and the same
  answer every time for the same id (the first answer is the reference).
* search_tracks: prefixes of "artist title" or "title" of random tracks, with or without one
  typo (deletion / substitution / transposition / doubled letter). Found@10 is counted.
  Only plain prefixes that miss count as failures, because a typo can legitimately
  turn one name into another.
* Bad inputs, each with the error kind it must get: truncated m4a (``corrupt``), truncated
  Ogg and Ogg with garbage after the headers (``corrupt``), zero bytes (``empty``), more
  than max_upload_bytes (``too_large``), PNG and plain text (``not_audio``), 10 s of
  silence (``too_short``), an unknown track id for similar_to (``not_found``), and the
  upload that once **hung a decode**: an ID3v2 tag followed by an ``ffconcat`` script naming
  a named pipe with no writer, next to the service's temporary upload files. The sniffer
  lets it through because it starts with ``ID3``; ffmpeg used to skip the tag, pick the
  concat demuxer and block in ``open()`` until the decode timeout killed it. Since only
  audio demuxers are allowed (``engine.audio.AUDIO_DEMUXERS``) it is refused at once
  (``corrupt``: it starts like an mp3), which is what the soak now checks.
  ``--decode-timeout`` (default 5 s, instead of the product's 30 s) bounds any decode
  that still runs long. A good query decodes in ~0.1 s, so 5 s is far from hurting good
  queries.

Pass criteria (exit 0 only if all hold): no unexpected exception and no internal/500
answer; every bad input answered with its expected kind; every voice note identified as
its track; every similar_to answer valid and stable; every plain-prefix search finds its
track; RSS bounded (peak < --max-rss-mb, and the second-half slope < --max-slope-mb-min);
no leftover ffmpeg children; the index unchanged (Milvus track/segment counts,
fingerprint generation, catalogue counts, catalogue/fingerprint file hashes).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.settings import Settings  # noqa: E402
from benchutil import encode_opus, pct, rss_mb  # noqa: E402

WEIGHTS = {"note": 0.40, "similar": 0.30, "search": 0.25, "bad": 0.05}


# ---- process figures -------------------------------------------------------------------


def n_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def n_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def child_pids() -> list[int]:
    me, out = os.getpid(), []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                parts = fh.read().rsplit(")", 1)[1].split()
            if int(parts[1]) == me:
                out.append(int(d))
        except (OSError, IndexError, ValueError):
            continue
    return out


def slope_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope (MB/min) of (t_s, rss_mb) samples."""
    if len(samples) < 3:
        return float("nan")
    t = np.array([s[0] for s in samples]) / 60.0
    y = np.array([s[1] for s in samples])
    return float(np.polyfit(t, y, 1)[0])


def sha256(path: Path) -> str | None:
    if not path.exists():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- the request pool ---------------------------------------------------------------------


def encode_m4a(samples: np.ndarray, sr: int) -> bytes:
    with tempfile.NamedTemporaryFile(suffix=".m4a") as tmp:  # mp4 needs a seekable output
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", "pipe:",
                        "-c:a", "aac", "-b:a", "64k", tmp.name],
                       input=np.ascontiguousarray(samples, "<f4").tobytes(), check=True)
        return Path(tmp.name).read_bytes()


def typo(text: str, rng: random.Random) -> str:
    words = [i for i, w in enumerate(text.split()) if len(w) >= 5]
    if not words:
        return text
    parts = text.split()
    i = rng.choice(words)
    w = parts[i]
    j = rng.randrange(1, len(w) - 1)
    op = rng.choice(["del", "sub", "swap", "dup"])
    if op == "del":
        w = w[:j] + w[j + 1:]
    elif op == "sub":
        w = w[:j] + rng.choice("aeiourstn") + w[j + 1:]
    elif op == "swap":
        w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    else:
        w = w[:j] + w[j] + w[j:]
    parts[i] = w
    return " ".join(parts)


def id3_wrapped(payload: bytes) -> bytes:
    """An ID3v2.4 tag (16 bytes of padding) followed by ``payload``."""
    n = 16
    size = bytes([(n >> 21) & 127, (n >> 14) & 127, (n >> 7) & 127, n & 127])
    return b"ID3\x04\x00\x00" + size + b"\x00" * n + payload


def prepare(svc, settings: Settings, n_notes: int, rng: np.random.Generator, fifo_name: str) -> dict[str, Any]:
    from engine.audio import decode, limits_from_settings
    from engine.catalogue import dedup_key
    from index_builder.augment import phone_degrade

    sr = 16000
    tracks = list(svc.catalogue.all_tracks())
    with_audio = [t for t in tracks if t.audio_path and Path(t.audio_path).exists()]
    order = list(rng.permutation(len(with_audio)))
    notes: list[dict[str, Any]] = []
    m4a_src = None
    for n_i in range(n_notes):
        seconds = 10.0 if n_i % 2 == 0 else 30.0
        for _ in range(len(order)):
            t = with_audio[order[0]]
            order = order[1:] + order[:1]
            a = decode(t.audio_path, sr, limits_from_settings(settings, for_catalogue=True))
            if a.duration_s >= seconds + 1:
                break
        else:
            raise SystemExit("no catalogue track long enough for the voice notes")
        start = int(rng.uniform(0, a.duration_s - seconds) * sr)
        clip = a.samples[start: start + int(seconds * sr)]
        if m4a_src is None:
            m4a_src = clip
        from index_builder.augment import draw_params

        params = draw_params(rng)
        degraded = phone_degrade(clip, sr, rng, opus=False, params=params)
        notes.append({"name": f"note{n_i:02d}_{int(seconds)}s", "data": encode_opus(degraded, sr),
                      "expected": t.track_id, "expected_dedup": dedup_key(t), "seconds": seconds,
                      "start_s": round(start / sr, 1),
                      "degrade": {"snr_db": round(params.snr_db, 1), "noise": params.noise_kind,
                                  "rt60_s": round(params.rt60_s, 2), "drr_db": round(params.drr_db, 1)}})
    demo = settings.data_dir / "demo" / "voice_note.ogg"
    demo_track = settings.data_dir / "demo" / "voice_note.track"
    if demo.exists() and demo_track.exists():
        tid = demo_track.read_text().strip()
        t = svc.catalogue.get(tid)
        if t is not None:
            notes.append({"name": "demo_voice_note", "data": demo.read_bytes(), "expected": tid,
                          "expected_dedup": dedup_key(t), "seconds": None, "start_s": None, "degrade": "demo"})

    ogg = notes[0]["data"]
    m4a = encode_m4a(m4a_src, sr)
    png = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
           b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")
    bad = [
        {"name": "m4a_truncated_half", "data": m4a[: len(m4a) // 2], "expected": "corrupt"},
        {"name": "ogg_truncated_3k", "data": ogg[:3000], "expected": "corrupt"},
        {"name": "ogg_garbage_after_headers", "data": ogg[:200] + bytes(rng.integers(0, 256, 20000, dtype=np.uint8)),
         "expected": "corrupt"},
        {"name": "empty", "data": b"", "expected": "empty"},
        {"name": "huge", "data": b"\x00" * (settings.max_upload_bytes + 1), "expected": "too_large"},
        {"name": "png", "data": png, "expected": "not_audio"},
        {"name": "text", "data": b"Hello, this is not a song. " * 40, "expected": "not_audio"},
        {"name": "silence_10s", "data": encode_opus(np.zeros(sr * 10, np.float32), sr), "expected": "too_short"},
        {"name": "id3_ffconcat_fifo", "data": id3_wrapped(f"ffconcat version 1.0\nfile {fifo_name}\n".encode()),
         "expected": "corrupt"},
        {"name": "similar_unknown_id", "track_id": "no-such-track-0000", "expected": "not_found"},
    ]
    return {"tracks": tracks, "notes": notes, "bad": bad}


def make_schedule(pool: dict[str, Any], n: int, http_fraction: float, rng: random.Random) -> list[dict[str, Any]]:
    from engine.catalogue import fold

    kinds = list(WEIGHTS)
    out = []
    ids = [t.track_id for t in pool["tracks"]]
    bad_i = 0
    for i in range(n):
        kind = rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]
        req: dict[str, Any] = {"i": i, "kind": kind, "http": rng.random() < http_fraction}
        if kind == "note":
            req["note"] = rng.randrange(len(pool["notes"]))
        elif kind == "similar":
            req["track_id"] = rng.choice(ids)
        elif kind == "search":
            t = rng.choice(pool["tracks"])
            base = rng.choice([f"{t.artist} {t.name}", t.name])
            cut = rng.randint(min(len(base), 4), len(base))
            q = base[:cut].strip() or base
            req["typo"] = rng.random() < 0.4 and len(q) >= 6
            req["q"] = typo(q, rng) if req["typo"] else q
            req["expected_id"] = t.track_id
            # a prefix shared by more than 10 tracks ("Warzone 2100 OST Tra") cannot name one
            fq = fold(q)
            req["ambiguous"] = sum(fold(f"{u.artist} {u.name}").startswith(fq) or fold(u.name).startswith(fq)
                                   for u in pool["tracks"]) > 10
        else:  # cycle through the bad inputs so each appears
            req["bad"] = bad_i % len(pool["bad"])
            bad_i += 1
        out.append(req)
    return out


# ---- the run --------------------------------------------------------------------------------


class HttpClient:
    def __init__(self, base: str) -> None:
        import aiohttp

        self.base = base
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))

    async def recommend(self, data: bytes) -> tuple[int, dict]:
        async with self.session.post(self.base + "/api/recommend", data=data,
                                     headers={"Content-Type": "application/octet-stream"}) as r:
            return r.status, await r.json()

    async def similar(self, track_id: str) -> tuple[int, dict]:
        async with self.session.get(self.base + "/api/similar", params={"track_id": track_id}) as r:
            return r.status, await r.json()

    async def search(self, q: str) -> tuple[int, dict]:
        async with self.session.get(self.base + "/api/search", params={"q": q, "limit": "10"}) as r:
            return r.status, await r.json()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from engine.catalogue import dedup_key
    from engine.errors import BusyError, SynestheteError
    from engine.service import SynestheteService

    settings = Settings.from_env().replace(data_dir=args.data_dir, decode_timeout_s=args.decode_timeout,
                                           web_rate_per_minute=1e9, web_rate_burst=10**9,
                                           web_search_rate_per_minute=1e9, web_search_rate_burst=10**9)
    files = {n: settings.data_dir / n for n in ("catalogue.sqlite", "fingerprints.sqlite")}
    hashes_before = {n: sha256(p) for n, p in files.items()}
    fifo_name = f"soak_hang_fifo_{os.getpid()}"
    fifo_path = Path(tempfile.gettempdir()) / fifo_name
    os.mkfifo(fifo_path)
    t_open = time.perf_counter()
    svc = SynestheteService(settings)
    open_s = time.perf_counter() - t_open

    def index_state() -> dict[str, Any]:
        return {"milvus_tracks": svc.store.count_tracks(), "milvus_segments": svc.store.count_segments(),
                "fingerprint_generation": svc.fingerprints.generation() if svc.fingerprints else None,
                "catalogue_tracks": svc.catalogue.count(), "catalogue_indexed": svc.catalogue.count(indexed_only=True),
                "built_at": svc.catalogue.get_meta("built_at")}

    runner = None
    http = None
    try:
        state_before = index_state()
        t_prep = time.perf_counter()
        pool = prepare(svc, settings, args.notes, np.random.default_rng(args.seed), fifo_name)
        prep_s = time.perf_counter() - t_prep
        by_id = {t.track_id: t for t in pool["tracks"]}
        schedule = make_schedule(pool, args.requests, args.http_fraction, random.Random(args.seed))
        # warm-up (lazy model init, collection load), not counted
        await svc.arecommend(pool["notes"][0]["data"])

        if args.http_fraction > 0:
            from aiohttp import web

            from web.app import create_app

            runner = web.AppRunner(create_app(svc, settings), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            http = HttpClient(f"http://127.0.0.1:{port}")

        queue: asyncio.Queue = asyncio.Queue()
        for req in schedule:
            queue.put_nowait(req)
        lat: dict[str, list[float]] = defaultdict(list)
        counts: Counter = Counter()
        failures: list[dict[str, Any]] = []
        note_results: dict[str, Counter] = defaultdict(Counter)
        similar_ref: dict[str, list[str]] = {}
        search_found: Counter = Counter()
        busy_retries = 0
        samples: list[tuple[float, float, int, int, int]] = []  # t, rss, threads, fds, children
        loop_lag: list[float] = []
        t0 = time.perf_counter()
        deadline = t0 + args.max_seconds
        stop = asyncio.Event()

        def fail(req: dict, why: str) -> None:
            counts["fail"] += 1
            if len(failures) < 100:
                failures.append({"i": req["i"], "kind": req["kind"], "http": req["http"], "why": why,
                                 **{k: req[k] for k in ("q", "track_id") if k in req},
                                 **({"note": pool["notes"][req["note"]]["name"]} if "note" in req else {}),
                                 **({"bad": pool["bad"][req["bad"]]["name"]} if "bad" in req else {})})

        async def sampler() -> None:
            while not stop.is_set():
                samples.append((time.perf_counter() - t0, rss_mb(), n_threads(), n_fds(), len(child_pids())))
                try:
                    await asyncio.wait_for(stop.wait(), timeout=args.sample_s)
                except asyncio.TimeoutError:
                    pass

        async def lag_monitor() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.1)
                loop_lag.append(time.perf_counter() - t - 0.1)

        async def call(req: dict) -> tuple[str, Any]:
            """('ok', answer) or ('error', kind); answers normalised to dicts."""
            nonlocal busy_retries
            for attempt in range(5):
                try:
                    bad = pool["bad"][req["bad"]] if req["kind"] == "bad" else None
                    if req["kind"] == "note" or (bad is not None and "data" in bad):
                        data = pool["notes"][req["note"]]["data"] if bad is None else bad["data"]
                        if req["http"]:
                            status, body = await http.recommend(data)
                        else:
                            return "ok", (await svc.arecommend(data)).to_dict()
                    elif req["kind"] in ("similar", "bad"):
                        tid = req["track_id"] if bad is None else bad["track_id"]
                        if req["http"]:
                            status, body = await http.similar(tid)
                        else:
                            return "ok", (await svc.asimilar_to(tid)).to_dict()
                    else:
                        if req["http"]:
                            status, body = await http.search(req["q"])
                        else:
                            hits = await svc.asearch_tracks(req["q"], 10)
                            return "ok", {"results": [h.track.to_dict() for h in hits]}
                except BusyError:
                    busy_retries += 1
                    await asyncio.sleep(0.5 * (attempt + 1))
                    continue
                except SynestheteError as exc:
                    return "error", exc.kind
                if status == 200:
                    return "ok", body
                kind = body.get("error", {}).get("kind", f"http{status}")
                if kind == "busy":
                    busy_retries += 1
                    await asyncio.sleep(0.5 * (attempt + 1))
                    continue
                if status >= 500 and kind not in ("query_timeout",):
                    return "error", f"{kind}/http{status}"
                return "error", kind
            return "error", "busy(gave up)"

        async def client(cid: int) -> None:
            while not queue.empty() and time.perf_counter() < deadline:
                req = queue.get_nowait()
                t = time.perf_counter()
                try:
                    status, ans = await call(req)
                except Exception as exc:  # noqa: BLE001 - an unexpected exception is a finding
                    counts["exception"] += 1
                    fail(req, f"exception {type(exc).__name__}: {exc}")
                    continue
                finally:
                    counts["done"] += 1
                    if counts["done"] % 100 == 0:
                        print(f"  {counts['done']} requests, {time.perf_counter() - t0:.0f} s, RSS {rss_mb():.0f} MB, "
                              f"failures {counts['fail']}", flush=True)
                dt = time.perf_counter() - t
                label = req["kind"] if req["kind"] != "bad" else "bad:" + pool["bad"][req["bad"]]["expected"]
                lat[label + ("/http" if req["http"] else "/api")].append(dt)
                counts[req["kind"]] += 1
                if req["kind"] == "bad":
                    exp = pool["bad"][req["bad"]]["expected"]
                    if status != "error" or ans != exp:
                        fail(req, f"expected error {exp}, got {status} {ans if status == 'error' else ''}")
                    continue
                if status != "ok":
                    fail(req, f"error {ans}")
                    continue
                if req["kind"] == "note":
                    note = pool["notes"][req["note"]]
                    ident = ans.get("identified")
                    got = ident["track_id"] if ident else None
                    note_results[note["name"]][got] += 1
                    ok = ident is not None and (got == note["expected"] or
                                                dedup_key(svc.catalogue.get(got)) == note["expected_dedup"])
                    if not ok:
                        counts["note_mismatch"] += 1
                        counts["note_wrong_track" if ident is not None else "note_unidentified"] += 1
                        fail(req, f"identified {got!r}, expected {note['expected']!r}")
                elif req["kind"] == "similar":
                    ids = [r["track_id"] for r in ans["results"]]
                    ref = similar_ref.setdefault(req["track_id"], ids)
                    if not ids or req["track_id"] in ids or ids != ref:
                        fail(req, f"similar_to answer invalid/unstable: {ids} vs {ref}")
                else:
                    keys = [r.get("track_id") for r in ans["results"]]
                    found = req["expected_id"] in keys or any(
                        dedup_key(by_id[k]) == dedup_key(by_id[req["expected_id"]]) for k in keys if k in by_id)
                    cls = "typo" if req["typo"] else ("prefix_ambiguous" if req["ambiguous"] else "prefix")
                    search_found[(cls, found)] += 1
                    if not found and cls == "prefix":
                        fail(req, f"prefix search missed its track: {keys[:5]}")

        bg = [asyncio.create_task(sampler()), asyncio.create_task(lag_monitor())]
        await asyncio.wait_for(asyncio.gather(*(client(c) for c in range(args.clients))),
                               timeout=args.max_seconds + 180)
        wall_s = time.perf_counter() - t0
        stop.set()
        await asyncio.gather(*bg)
        samples.append((time.perf_counter() - t0, rss_mb(), n_threads(), n_fds(), len(child_pids())))
        await asyncio.sleep(0.5)
        leftover_children = child_pids()
        state_after = index_state()
    finally:
        if http is not None:
            await http.session.close()
        if runner is not None:
            await runner.cleanup()
        svc.close()
        fifo_path.unlink(missing_ok=True)
    hashes_after = {n: sha256(p) for n, p in files.items()}

    rss = [s[1] for s in samples]
    half = [(s[0], s[1]) for s in samples if s[0] >= samples[-1][0] / 2]
    slope = slope_per_min(half)
    index_same = state_before == state_after
    files_same = all(hashes_before[n] == hashes_after[n] for n in ("catalogue.sqlite", "fingerprints.sqlite"))
    bad_expected = Counter()
    for req in schedule[: counts["done"]]:
        if req["kind"] == "bad":
            bad_expected[pool["bad"][req["bad"]]["name"]] += 1
    checks = {
        "no_exceptions": counts["exception"] == 0,
        "all_answers_as_expected": counts["fail"] == 0,
        "notes_all_identified": counts["note_mismatch"] == 0,
        "notes_never_a_wrong_track": counts["note_wrong_track"] == 0,
        "notes_same_answer_every_time": all(len(c) == 1 for c in note_results.values()),
        "rss_peak_bounded": max(rss) < args.max_rss_mb,
        "rss_second_half_slope_ok": not (slope > args.max_slope_mb_min),
        "no_leftover_children": not leftover_children,
        "index_unchanged": index_same,
        "catalogue_and_fingerprint_files_unchanged": files_same,
        "all_requests_done": counts["done"] == len(schedule),
    }
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "machine": f"{platform.node()} {platform.machine()} cores={os.cpu_count()} load={os.getloadavg()}",
        "python": platform.python_version(),
        "model_id": svc.model_id,
        "settings": {"workers": settings.workers, "decode_timeout_s": settings.decode_timeout_s,
                     "query_timeout_s": settings.query_timeout_s, "max_upload_bytes": settings.max_upload_bytes},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "open_s": round(open_s, 2), "prepare_s": round(prep_s, 1), "wall_s": round(wall_s, 1),
        "requests_planned": len(schedule), "requests_done": counts["done"],
        "throughput_rps": round(counts["done"] / wall_s, 2),
        "counts": {k: counts[k] for k in ("note", "similar", "search", "bad", "fail", "exception", "note_mismatch",
                                                 "note_unidentified", "note_wrong_track")},
        "http_requests": sum(1 for r in schedule[: counts["done"]] if r["http"]),
        "busy_retries": busy_retries,
        "bad_inputs_sent": dict(bad_expected),
        "latency_s": {k: {"n": len(v), "p50": round(pct(v, 50), 3), "p95": round(pct(v, 95), 3),
                          "max": round(max(v), 3)} for k, v in sorted(lat.items())},
        "search_found_at_10": {f"{k}_{'found' if f else 'missed'}": n for (k, f), n in sorted(search_found.items())},
        "notes": {n["name"]: {"expected": n["expected"], "degrade": n["degrade"],
                              "answers": {str(k): v for k, v in note_results.get(n["name"], {}).items()}}
                  for n in pool["notes"]},
        "rss_mb": {"start": round(rss[0], 1), "peak": round(max(rss), 1), "end": round(rss[-1], 1),
                   "second_half_slope_mb_per_min": round(slope, 2), "samples": len(samples)},
        "threads": {"start": samples[0][2], "max": max(s[2] for s in samples), "end": samples[-1][2]},
        "fds": {"start": samples[0][3], "max": max(s[3] for s in samples), "end": samples[-1][3]},
        "max_children_seen": max(s[4] for s in samples), "leftover_children": leftover_children,
        "event_loop_lag_ms": {"p50": round(pct(loop_lag, 50) * 1000, 1), "p95": round(pct(loop_lag, 95) * 1000, 1),
                              "max": round(max(loop_lag, default=0) * 1000, 1)},
        "index_before": state_before, "index_after": state_after,
        "file_hashes_before": hashes_before, "file_hashes_after": hashes_after,
        "rss_samples": [[round(s[0], 1), round(s[1], 1), s[2], s[3], s[4]] for s in samples],
        "failures": failures,
        "checks": checks, "passed": all(checks.values()),
    }


def print_summary(r: dict[str, Any]) -> None:
    print(f"\nsoak: {r['requests_done']}/{r['requests_planned']} requests in {r['wall_s']} s "
          f"({r['throughput_rps']} req/s), {r['http_requests']} over HTTP, busy retries {r['busy_retries']}")
    print(f"{'class':<26}{'n':>6}{'p50 s':>9}{'p95 s':>9}{'max s':>9}")
    for k, v in r["latency_s"].items():
        print(f"{k:<26}{v['n']:>6}{v['p50']:>9.3f}{v['p95']:>9.3f}{v['max']:>9.3f}")
    print(f"counts: {r['counts']}")
    print(f"search found@10: {r['search_found_at_10']}")
    m = r["rss_mb"]
    print(f"RSS MB: start {m['start']}  peak {m['peak']}  end {m['end']}  "
          f"slope 2nd half {m['second_half_slope_mb_per_min']} MB/min; threads {r['threads']}; fds {r['fds']}; "
          f"max ffmpeg children {r['max_children_seen']}, leftover {r['leftover_children']}")
    print(f"event-loop lag ms: {r['event_loop_lag_ms']}")
    print(f"index before {r['index_before']}\nindex after  {r['index_after']}")
    bad_notes = {k: v for k, v in r["notes"].items() if set(v["answers"]) - {v["expected"]}}
    print(f"voice notes in the pool: {len(r['notes'])}, answered wrongly (any time): {len(bad_notes)}")
    for k, v in bad_notes.items():
        print(f"  {k}: expected {v['expected']}, answers {v['answers']}, degrade {v['degrade']}")
    for f in r["failures"][:20]:
        print("FAIL", f)
    width = max(len(k) for k in r["checks"])
    for k, ok in r["checks"].items():
        print(f"  {k:<{width}}  {'PASS' if ok else 'FAIL'}")
    print("SOAK", "PASSED" if r["passed"] else "FAILED")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--max-seconds", type=float, default=900.0, help="stop issuing requests after this long")
    ap.add_argument("--http-fraction", type=float, default=0.25, help="share of requests sent over HTTP (0 = none)")
    ap.add_argument("--notes", type=int, default=20, help="voice notes in the pool (+ the demo's own)")
    ap.add_argument("--decode-timeout", type=float, default=5.0, help="Settings.decode_timeout_s for this run")
    ap.add_argument("--sample-s", type=float, default=2.0, help="RSS sampling interval")
    ap.add_argument("--max-rss-mb", type=float, default=2048.0)
    ap.add_argument("--max-slope-mb-min", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    report = asyncio.run(run(args))
    print_summary(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
