"""Name search (autocomplete) at catalogue scale: latency and match quality per approach.

Builds catalogue SQLite files of 10k / 50k / 232k / 1M tracks from the generated
Kaggle-layout CSV (bench/gen_catalogue.py csv) with ``CatalogueDB.upsert_tracks``
(what the index builder does), then runs a fixed query mix against each approach:

- ``engine``   : ``CatalogueDB.search`` as it is in engine/catalogue.py now;
- ``fts_or_v0``: the first version (FTS5 trigram phrase, else OR of all the query's
                 trigrams ranked by bm25, rapidfuzz re-rank) -- kept here to compare;
- ``rapidfuzz``: no index; rapidfuzz ``process.extract`` over every folded
                 "title artist" string held in memory (what a pure-fuzzy search costs).

Query mix (seeded): typed prefixes of "artist title" and "title" of random tracks,
the same with a typo (deletion / substitution / transposition / doubled letter),
accent-stripped and upper-cased forms, 1-2 letter prefixes, common words, and the
named checks of the issue ("beyonce hal" -> Beyoncé – Halo, "metalica" -> Metallica).
"found@10" = the query's source song (by dedup key) is among the 10 hits.

    python bench/bench_name_search.py [--sizes 10000 50000 232725 1000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.catalogue import CatalogueDB, SearchHit, Track, dedup_key, fold
from index_builder.ingest import read_kaggle_csv

OUT = Path("/work/data/scale")

CHECKS = [  # query, expected (artist, title-startswith) at rank 1
    ("beyonce hal", ("Beyoncé", "Halo")), ("Beyoncé – Halo", ("Beyoncé", "Halo")), ("halo beyo", ("Beyoncé", "Halo")),
    ("metalica", ("Metallica", "")), ("metallica enter", ("Metallica", "Enter Sandman")),
    ("enter sandman", ("Metallica", "Enter Sandman")), ("nothing else maters", ("Metallica", "Nothing Else Matters")),
    ("sigur ros hoppipolla", ("Sigur Rós", "Hoppípolla")), ("bjork joga", ("Björk", "Jóga")),
    ("motley crue kickstart", ("Mötley Crüe", "Kickstart")), ("motorhead ace", ("Motörhead", "Ace of Spades")),
    ("celine dion my heart", ("Céline Dion", "My Heart Will Go On")), ("despacito", ("Luis Fonsi", "Despacito")),
    ("edith piaf non je ne", ("Édith Piaf", "Non, je ne regrette rien")), ("ac/dc back in", ("AC/DC", "Back In Black")),
    ("acdc back in black", ("AC/DC", "Back In Black")), ("guns n roses sweet child", ("Guns N' Roses", "Sweet Child")),
    ("pink just give me", ("P!nk", "Just Give Me")), ("beethoven symphony no. 5", ("Ludwig van Beethoven", "Symphony No. 5")),
    ("chopin nocturne op. 9", ("Frédéric Chopin", "Nocturne")), ("bohemian rapsody", ("Queen", "Bohemian Rhapsody")),
    ("here comes the sun", ("The Beatles", "Here Comes The Sun")), ("rosalia malamente", ("Rosalía", "MALAMENTE")),
    ("gasolina daddy", ("Daddy Yankee", "Gasolina")), ("garota de ipanema", ("Antônio Carlos Jobim", "Garota de Ipanema")),
]


def pct(v: list[float], q: float) -> float:
    return round(float(np.percentile(v, q)), 2) if v else float("nan")


# ---------------------------------------------------------------------------
# catalogues per size
# ---------------------------------------------------------------------------

def catalogue_tracks(csv_path: Path) -> list[Track]:
    return list(read_kaggle_csv(csv_path).tracks.values())


def tracks_for_size(base: list[Track], n: int, seed: int = 3) -> list[Track]:
    """The first n tracks (named checks always in); past the CSV, recombined names with fresh ids."""
    anchors = {(a, t) for _, (a, t) in CHECKS}
    must = [t for t in base if any(t.artist == a and t.name.startswith(p) for a, p in anchors)]
    rest = [t for t in base if t not in must]
    if n <= len(base):
        return must + rest[: n - len(must)]
    r = np.random.default_rng(seed)
    out = list(base)
    i = 0
    while len(out) < n:
        a, b = base[int(r.integers(0, len(base)))], base[int(r.integers(0, len(base)))]
        out.append(Track(f"x{i:021d}", a.name if r.random() < 0.5 else f"{a.name} {b.name.split()[0]}", b.artist,
                         list(a.genres), int(r.integers(0, 90)), a.duration_ms))
        i += 1
    return out


def build_db(tracks: list[Track], path: Path) -> float:
    if path.exists():
        return 0.0
    t0 = time.perf_counter()
    db = CatalogueDB(path)
    for i in range(0, len(tracks), 20000):
        db.upsert_tracks(tracks[i : i + 20000])
    db.close()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------
# queries
# ---------------------------------------------------------------------------

def typo(r: np.random.Generator, s: str) -> str:
    if len(s) < 5:
        return s
    i = int(r.integers(1, len(s) - 2))
    kind = int(r.integers(0, 4))
    if kind == 0:
        return s[:i] + s[i + 1 :]
    if kind == 1:
        return s[:i] + "qwertyuiopasdfghjklzxcvbnm"[int(r.integers(0, 26))] + s[i + 1 :]
    if kind == 2:
        return s[:i] + s[i + 1] + s[i] + s[i + 2 :]
    return s[:i] + s[i] + s[i:]


def make_queries(tracks: list[Track], n: int = 300, seed: int = 5) -> list[dict]:
    r = np.random.default_rng(seed)
    pool = [t for t in tracks if len(fold(t.name)) >= 4]
    qs: list[dict] = [{"q": q, "kind": "check", "expect": exp} for q, exp in CHECKS]
    popular = sorted(pool, key=lambda t: -t.popularity)[:5000]
    for k in range(n):
        t = popular[int(r.integers(0, len(popular)))] if r.random() < 0.6 else pool[int(r.integers(0, len(pool)))]
        kind = ["prefix_artist_title", "prefix_title", "typo", "typo_title", "accents_upper", "short", "word"][k % 7]
        full = f"{t.artist} {t.name}"
        if kind == "prefix_artist_title":
            q = full[: max(len(t.artist) + 4, int(len(full) * r.uniform(0.4, 0.8)))]
        elif kind == "prefix_title":
            q = t.name[: max(4, int(len(t.name) * r.uniform(0.5, 1.0)))]
        elif kind == "typo":
            q = typo(r, full[: max(len(t.artist) + 5, int(len(full) * 0.7))])
        elif kind == "typo_title":
            q = typo(r, t.name[: max(6, int(len(t.name) * 0.8))])
        elif kind == "accents_upper":
            q = fold(full).upper()[: int(len(full) * 0.7) + 3]
        elif kind == "short":
            q = fold(t.name)[: int(r.integers(1, 3))]
        else:
            q = str(r.choice(["love", "night", "amor", "heart", "remix", "feat", "live", "symphony", "the", "corazón"]))
        qs.append({"q": q, "kind": kind, "target": dedup_key(t)})
    return qs


# ---------------------------------------------------------------------------
# approaches
# ---------------------------------------------------------------------------

def search_fts_or_v0(db: CatalogueDB, text: str, limit: int = 10) -> list[SearchHit]:
    """The first version of CatalogueDB.search (before this benchmark), verbatim in substance."""
    from rapidfuzz import fuzz

    q = fold(text)
    if not q:
        return []
    conn = db._conn
    candidates = {}
    if len(q) >= 3:
        phrase = '"' + q.replace('"', "") + '"'
        for r in conn.execute(f"SELECT t.* FROM tracks_fts f JOIN tracks t ON t.{db._fts_rowid}=f.rowid "
                              "WHERE tracks_fts MATCH ? ORDER BY t.popularity DESC LIMIT 200", (phrase,)):
            candidates[r["track_key"]] = r
        if len(candidates) < limit:
            grams = sorted({q[i : i + 3] for i in range(len(q) - 2) if " " not in q[i : i + 3].strip()})
            if grams:
                expr = " OR ".join('"' + g.replace('"', "") + '"' for g in grams)
                for r in conn.execute(f"SELECT t.* FROM tracks_fts f JOIN tracks t ON t.{db._fts_rowid}=f.rowid "
                                      "WHERE tracks_fts MATCH ? ORDER BY bm25(tracks_fts) LIMIT 300", (expr,)):
                    candidates.setdefault(r["track_key"], r)
    else:
        for r in conn.execute("SELECT * FROM tracks WHERE search_text >= ? AND search_text < ? "
                              "ORDER BY popularity DESC LIMIT 100", (q, q + "\uffff")):
            candidates[r["track_key"]] = r
    scored = []
    for key, r in candidates.items():
        st = r["search_text"]
        score = max(fuzz.token_set_ratio(q, st), fuzz.partial_ratio(q, st) * 0.95)
        if st.startswith(q) or fold(r["name"]).startswith(q):
            score += 5
        scored.append((score, r["popularity"], key, r))
    scored.sort(key=lambda x: (-x[0], -x[1]))
    hits, seen = [], set()
    for score, _, _, r in scored:
        if score < 50 or r["dedup_key"] in seen:
            continue
        seen.add(r["dedup_key"])
        hits.append(SearchHit(db._row_to_track(r), min(100.0, score) / 100.0))
        if len(hits) >= limit:
            break
    return hits


class RapidfuzzAll:
    """Everything in memory; rapidfuzz scores every string for every query."""

    def __init__(self, tracks: list[Track]) -> None:
        self.tracks = tracks
        self.texts = [fold(f"{t.name} {t.artist}") for t in tracks]
        self.pop = np.array([t.popularity for t in tracks])

    def search(self, text: str, limit: int = 10) -> list[SearchHit]:
        from rapidfuzz import fuzz, process

        q = fold(text)
        if not q:
            return []
        res = process.extract(q, self.texts, scorer=fuzz.WRatio, limit=limit * 5, score_cutoff=50)
        res.sort(key=lambda x: (-x[1], -self.pop[x[2]]))
        hits, seen = [], set()
        for _, score, i in res:
            t = self.tracks[i]
            dk = dedup_key(t)
            if dk in seen:
                continue
            seen.add(dk)
            hits.append(SearchHit(t, score / 100))
            if len(hits) >= limit:
                break
        return hits


def run_queries(fn, queries: list[dict], budget_s: float) -> dict:
    lat: list[float] = []
    cpu: list[float] = []
    by_kind: dict[str, list[float]] = {}
    found: dict[str, list[int]] = {}
    failed_checks = []
    t_end = time.perf_counter() + budget_s
    fn("warm up")
    for q in queries:
        t0, c0 = time.perf_counter(), time.thread_time()
        hits = fn(q["q"])
        ms = (time.perf_counter() - t0) * 1000
        lat.append(ms)
        cpu.append((time.thread_time() - c0) * 1000)
        by_kind.setdefault(q["kind"], []).append(ms)
        if q["kind"] == "check":
            a, p = q["expect"]
            ok = bool(hits) and hits[0].track.artist == a and hits[0].track.name.startswith(p)
            found.setdefault("check", []).append(int(ok))
            if not ok:
                failed_checks.append({"q": q["q"], "got": hits[0].track.title if hits else None})
        elif q["kind"] not in ("short", "word"):
            found.setdefault(q["kind"], []).append(int(any(dedup_key(h.track) == q["target"] for h in hits)))
        # duplicates shown once
        dks = [dedup_key(h.track) for h in hits]
        if len(dks) != len(set(dks)):
            found.setdefault("duplicate_free", []).append(0)
        if time.perf_counter() > t_end:
            break
    return {
        "n": len(lat), "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "max_ms": round(max(lat), 1),
        "mean_ms": round(statistics.fmean(lat), 2),
        # CPU time of the searching thread: the latency on an idle core (this machine's 2 cores are shared)
        "cpu_p50_ms": pct(cpu, 50), "cpu_p95_ms": pct(cpu, 95),
        "p95_ms_by_kind": {k: pct(v, 95) for k, v in by_kind.items()},
        "found_at_10": {k: round(float(np.mean(v)), 3) for k, v in found.items()},
        "checks_passed": f"{sum(found.get('check', []))}/{len(found.get('check', []))}",
        "failed_checks": failed_checks,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", type=Path, default=OUT / "tracks.csv")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 232_725, 1_000_000])
    ap.add_argument("--approaches", nargs="+", default=["engine", "fts_or_v0", "rapidfuzz"])
    ap.add_argument("--queries", type=int, default=350)
    ap.add_argument("--budget-s", type=float, default=60.0, help="per approach and size")
    ap.add_argument("--workdir", type=Path, default=OUT / "names")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the SQLite files (after a schema change)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)

    base = catalogue_tracks(args.csv)
    report: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.node()} {platform.machine()} cores={__import__('os').cpu_count()} "
                               f"sqlite {__import__('sqlite3').sqlite_version}",
                    "command": " ".join(sys.argv), "sizes": {}}
    for n in args.sizes:
        tracks = tracks_for_size(base, n)
        if len(tracks) < n and n > len(base):
            continue
        n = len(tracks)
        path = args.workdir / f"catalogue_{n}.sqlite"
        if args.rebuild and path.exists():
            path.unlink()
        build_s = build_db(tracks, path)
        queries = make_queries(tracks)[: args.queries]
        db = CatalogueDB(path, read_only=True)
        entry: dict = {"tracks": n, "db_mb": round(path.stat().st_size / 2**20, 1), "build_s": round(build_s, 1)}
        for name in args.approaches:
            if name == "engine":
                fn = lambda q: db.search(q, 10)
            elif name == "fts_or_v0":
                fn = lambda q: search_fts_or_v0(db, q, 10)
            else:
                t0 = time.perf_counter()
                rf = RapidfuzzAll(tracks)
                entry["rapidfuzz_load_s"] = round(time.perf_counter() - t0, 1)
                fn = lambda q: rf.search(q, 10)
            res = run_queries(fn, queries, args.budget_s)
            entry[name] = res
            print(f"{n:>8} {name:>10}: p50 {res['p50_ms']:7.2f} ms  p95 {res['p95_ms']:7.2f} ms  max {res['max_ms']:7.1f}"
                  f"  cpu p50 {res['cpu_p50_ms']:6.2f} p95 {res['cpu_p95_ms']:6.2f}"
                  f"  checks {res['checks_passed']}  found@10 {res['found_at_10']}", flush=True)
            for f in res["failed_checks"][:6]:
                print(f"           failed: {f}")
        db.close()
        report["sizes"][str(n)] = entry
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
