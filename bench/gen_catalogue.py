"""A full-size catalogue for measuring: Kaggle-layout CSV + embeddings that look real.

Audio for the Kaggle "Ultimate Spotify Tracks DB" (232,725 rows, ~176k distinct
track_ids, 26 genres) cannot be had here; everything except decoding and
embedding can still be measured at that size.  Steps (all output goes to --out,
default /work/data/scale; nothing big is written into the repository):

  embed-dev  real musicnn + default-head vectors of the dev corpus (238 mp3s),
             track vector + per-segment vectors at the catalogue hop (3 s),
             cached as dev_embeddings.npz -- the raw material of every synthetic vector
  csv        the 232,725-row CSV (tracks.csv): multilingual names with accents and
             punctuation, feat./remix/remaster suffixes, Zipf-distributed artists,
             the same track_id under several genres, and some songs listed twice under
             different ids (as in Kaggle)
  vectors    one track vector per distinct track_id (track_vectors.npy + keys), made
             from the real ones: genre -> a pool of real tracks; artist -> a Dirichlet
             mix of 3 pool tracks; track -> artist centre + noise in the real vectors'
             PCA space.  Segment vectors (see :func:`segment_vectors`) = track vector +
             real per-segment residuals of a real track, at duration/3 s per track.
  build      the full-size index: ``index_builder.build.run_build`` with the CSV (the
             normal path: CSV parsing, genre merge, catalogue SQLite + FTS, collections,
             model id), then the vectors through the same write path a build's flush
             uses (VectorStore.upsert_tracks -> flush -> CatalogueDB.mark_indexed per
             batch).  What differs from a real build: no decode/embed (vectors come from
             ``vectors``), no fingerprints, and segment vectors only for the first
             --segment-tracks tracks (16M segment vectors for all would be 16 GB raw).

    python bench/gen_catalogue.py embed-dev
    python bench/gen_catalogue.py csv [--rows 232725]
    python bench/gen_catalogue.py vectors
    python bench/gen_catalogue.py build --data-dir /work/data/scale/index232k [--milvus-uri URI]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import resource
import string
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.embed import l2n

OUT = Path("/work/data/scale")
DEV = Path("/work/data/dev")
KAGGLE_ROWS = 232_725
DISTINCT_FRACTION = 176_774 / 232_725  # distinct track_ids in the real file
HOP_S = 3.0

GENRES = ["Movie", "R&B", "A Capella", "Alternative", "Country", "Dance", "Electronic", "Anime", "Folk",
          "Blues", "Opera", "Hip-Hop", "Children's Music", "Rap", "Indie", "Classical", "Pop", "Reggae",
          "Reggaeton", "Jazz", "Rock", "Ska", "Comedy", "Soul", "Soundtrack", "World"]
HEADER = ["genre", "artist_name", "track_name", "track_id", "popularity", "acousticness", "danceability",
          "duration_ms", "energy", "instrumentalness", "key", "liveness", "loudness", "mode", "speechiness",
          "tempo", "time_signature", "valence"]
KEYS = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]

# Real songs the name-search benchmark looks for (artist, title, popularity).
ANCHORS = [
    ("Beyoncé", "Halo", 78), ("Beyoncé", "Crazy In Love (feat. Jay-Z)", 80), ("Metallica", "Nothing Else Matters", 79),
    ("Metallica", "Enter Sandman", 81), ("Metallica", "Master of Puppets", 74), ("Sigur Rós", "Hoppípolla", 60),
    ("Björk", "Jóga", 55), ("Mötley Crüe", "Kickstart My Heart", 70), ("Motörhead", "Ace of Spades", 72),
    ("Céline Dion", "My Heart Will Go On - Love Theme from \"Titanic\"", 75), ("Rosalía", "MALAMENTE - Cap.1: Augurio", 66),
    ("Daddy Yankee", "Gasolina", 73), ("Luis Fonsi", "Despacito (feat. Daddy Yankee)", 79),
    ("Édith Piaf", "Non, je ne regrette rien", 62), ("Joaquín Sabina", "19 días y 500 noches", 58),
    ("AC/DC", "Back In Black", 80), ("Guns N' Roses", "Sweet Child O' Mine", 82), ("P!nk", "Just Give Me a Reason", 71),
    ("Ludwig van Beethoven", "Symphony No. 5 in C Minor, Op. 67: I. Allegro con brio", 55),
    ("Frédéric Chopin", "Nocturne No. 2 in E-Flat Major, Op. 9 No. 2", 60), ("Hikaru Utada", "First Love", 58),
    ("BTS", "Boy With Luv (feat. Halsey)", 77), ("Antônio Carlos Jobim", "Garota de Ipanema", 57),
    ("Queen", "Bohemian Rhapsody - Remastered 2011", 83), ("The Beatles", "Here Comes The Sun - Remastered 2009", 80),
]

_W = {
    "en": ["love", "night", "heart", "fire", "dream", "rain", "light", "dark", "city", "road", "home", "summer", "blue", "wild", "gold", "time", "river", "sky", "lonely", "broken", "forever", "tonight", "crazy", "sweet", "young", "free", "dancing", "falling", "burning", "running", "sunday", "midnight", "shadow", "ghost", "angel", "devil", "paradise", "highway", "ocean", "star", "moon", "thunder", "honey", "whiskey", "diamond", "silver", "glass", "stone", "echo", "mirror", "garden", "paper", "velvet", "neon", "electric", "golden", "hollow"],
    "es": ["amor", "corazón", "noche", "vida", "fuego", "sueño", "luna", "mar", "cielo", "canción", "bailar", "besos", "tú", "mí", "sin", "contigo", "siempre", "nunca", "quiero", "dime", "mañana", "alegría", "dolor", "ojos", "calle", "fiesta", "señorita", "niña", "perdón", "corazón-roto", "olvidarte", "volver", "lágrimas", "sol", "estrellas"],
    "fr": ["amour", "cœur", "nuit", "rêve", "étoile", "été", "chanson", "rue", "ciel", "mer", "soleil", "toujours", "jamais", "pourquoi", "mélancolie", "liberté", "français", "fête", "être", "là-bas", "désolé", "âme", "déjà", "mémoire"],
    "de": ["liebe", "herz", "nacht", "traum", "stern", "sommer", "straße", "himmel", "meer", "sonne", "immer", "nie", "warum", "über", "schön", "früh", "müde", "mädchen", "grüße", "weiß", "zurück", "glück", "für", "dich"],
    "pt": ["amor", "coração", "noite", "saudade", "sonho", "estrela", "verão", "canção", "rua", "céu", "mar", "sol", "sempre", "nunca", "você", "não", "está", "ação", "paixão", "ilusão", "tão", "lá"],
    "it": ["amore", "cuore", "notte", "sogno", "stella", "estate", "canzone", "strada", "cielo", "mare", "sole", "sempre", "città", "perché", "più", "così", "già"],
    "nordic": ["kärlek", "hjärta", "natt", "dröm", "stjärna", "sommar", "vår", "hav", "sol", "ljus", "mørke", "søster", "øya", "åpen", "blå"],
    "pl": ["miłość", "serce", "noc", "sen", "gwiazda", "lato", "piosenka", "żółć", "ulica", "niebo", "łąka", "źródło", "ćma"],
    "tr": ["aşk", "kalp", "gece", "rüya", "yıldız", "yaz", "şarkı", "sokak", "gökyüzü", "deniz", "güneş", "çiçek", "ağlama"],
    "ja": ["sakura", "yume", "hikari", "kokoro", "ai", "namida", "sora", "hoshi", "natsu", "tokyo", "kimi", "boku", "sekai", "mirai"],
    "ko": ["sarang", "maeum", "bam", "kkum", "byeol", "yeoreum", "norae", "haneul", "bada", "haetsal"],
}
_LANG_WEIGHTS = {"en": 0.55, "es": 0.13, "fr": 0.06, "de": 0.05, "pt": 0.05, "it": 0.04, "nordic": 0.03,
                 "pl": 0.02, "tr": 0.02, "ja": 0.03, "ko": 0.02}
_FIRST = ["James", "John", "Maria", "José", "Ana", "Luis", "Carlos", "Sofía", "Lucía", "Léa", "Chloé", "Zoë", "Björn", "Søren", "Jürgen", "Müller", "Ángel", "Renée", "Noël", "Łukasz", "Zoë", "Ayşe", "Hiroshi", "Yuki", "Min-jun", "Ji-woo", "Kwame", "Amara", "Aroha", "Mateo", "Valentina", "Camila", "Emma", "Olivia", "Liam", "Noah", "Ella", "Jack", "Max", "Tom", "Lily", "Grace", "Sam", "Alex", "Kim", "Lee", "Sean", "Nina", "Iris"]
_LAST = ["Smith", "Johnson", "García", "Martínez", "Rodríguez", "López", "González", "Pérez", "Müller", "Schröder", "Dubois", "Lefèvre", "Rossi", "Bianchi", "Silva", "Santos", "Oliveira", "Nowak", "Kowalski", "Yılmaz", "Öztürk", "Tanaka", "Suzuki", "Kim", "Park", "Andersson", "Nørgaard", "Åberg", "O'Brien", "McCarthy", "D'Angelo", "van", "der", "Berg", "de", "la", "Cruz", "Ng", "Nguyễn"]
_BAND_PRE = ["The", "Los", "Les", "Die", "", "", "", "", "DJ", "Lil", "MC", "Young"]
_SUFFIXES = [
    (0.05, lambda r, a: f" (feat. {a})"), (0.02, lambda r, a: f" (feat. {a} & {rand_person(r)})"),
    (0.03, lambda r, a: f" - {a} Remix"), (0.02, lambda r, a: " (Remix)"), (0.03, lambda r, a: f" - Remastered {r.integers(1995, 2019)}"),
    (0.02, lambda r, a: " - Live"), (0.015, lambda r, a: " - Radio Edit"), (0.01, lambda r, a: " - Acoustic Version"),
    (0.01, lambda r, a: " [Explicit]"), (0.01, lambda r, a: " - From \"" + cap(r.choice(_W["en"])) + "\" Soundtrack"),
]


def cap(w: str) -> str:
    return w[:1].upper() + w[1:]


def rand_person(r: np.random.Generator) -> str:
    return f"{r.choice(_FIRST)} {r.choice(_LAST)}"


def rand_words(r: np.random.Generator, lang: str, n: int) -> list[str]:
    return [str(w) for w in r.choice(_W[lang], size=n)]


def artist_name(r: np.random.Generator) -> str:
    kind = r.random()
    lang = r.choice(list(_LANG_WEIGHTS), p=list(_LANG_WEIGHTS.values()))
    if kind < 0.45:
        return rand_person(r)
    if kind < 0.85:
        pre = r.choice(_BAND_PRE)
        words = " ".join(cap(w) for w in rand_words(r, lang, int(r.integers(1, 3))))
        return f"{pre} {words}".strip()
    if kind < 0.93:
        return f"{rand_person(r)} & {rand_person(r)}"
    return "".join(cap(w) for w in rand_words(r, lang, 1)) + r.choice(["!", "$", "", " x", ".", "'s"])


def track_title(r: np.random.Generator, genre: str, other_artist: str) -> str:
    if genre in ("Classical", "Opera") and r.random() < 0.7:
        forms = ["Symphony", "Sonata", "Concerto", "Nocturne", "Étude", "Prelude", "Fugue", "Aria", "Suite"]
        key = f"{r.choice(KEYS)}{r.choice(['', '-Flat', '-Sharp'])} {r.choice(['Major', 'Minor'])}"
        mv = r.choice(["I. Allegro", "II. Andante", "III. Scherzo. Presto", "IV. Finale: Allegro con brio",
                       "Adagio sostenuto", "Largo"])
        return f"{r.choice(forms)} No. {r.integers(1, 30)} in {key}, Op. {r.integers(1, 130)}: {mv}"
    lang = r.choice(list(_LANG_WEIGHTS), p=list(_LANG_WEIGHTS.values()))
    n = int(r.choice([1, 2, 2, 3, 3, 4, 5]))
    words = rand_words(r, lang, n)
    title = " ".join(cap(w) if r.random() < 0.8 else w for w in words)
    x = r.random()
    if x < 0.04:
        title += "?"
    elif x < 0.07:
        title = title.upper()
    elif x < 0.09:
        title = f"{title}, Pt. {r.integers(1, 4)}"
    elif x < 0.11:
        title = f"{title} ({cap(str(r.choice(_W[lang])))})"
    p = r.random()
    acc = 0.0
    for prob, fn in _SUFFIXES:
        acc += prob
        if p < acc:
            title += fn(r, other_artist)
            break
    return title


def rand_id(r: np.random.Generator) -> str:
    alphabet = np.array(list(string.ascii_letters + string.digits))
    return "".join(r.choice(alphabet, 22))


# ---------------------------------------------------------------------------
# csv
# ---------------------------------------------------------------------------

def gen_csv(path: Path, rows: int, seed: int = 8) -> dict:
    r = np.random.default_rng(seed)
    distinct = int(round(rows * DISTINCT_FRACTION))
    n_artists = max(50, distinct // 7)
    artists = [artist_name(r) for _ in range(n_artists)]
    # Zipf-ish: a few artists with hundreds of tracks, most with one or two
    weights = 1.0 / np.arange(1, n_artists + 1) ** 0.9
    weights /= weights.sum()
    artist_of = r.choice(n_artists, size=distinct, p=weights)
    artist_genre = r.integers(0, len(GENRES), size=n_artists)
    tracks = []
    for i in range(distinct):
        a = int(artist_of[i])
        genre = GENRES[artist_genre[a]] if r.random() < 0.8 else GENRES[int(r.integers(0, len(GENRES)))]
        title = track_title(r, genre, artists[int(r.integers(0, n_artists))])
        pop = int(np.clip(r.normal(41, 18), 0, 100))
        dur = int(np.clip(r.lognormal(np.log(215_000), 0.35), 30_000, 1_500_000))
        tracks.append([genre, artists[a], title, rand_id(r), pop, dur])
    # some songs listed twice under different ids (Kaggle has these): same artist + title
    for i in r.choice(distinct, size=distinct // 40, replace=False):
        j = int(r.integers(0, distinct))
        tracks[j][1], tracks[j][2] = tracks[i][1], tracks[i][2]
    for k, (artist, title, pop) in enumerate(ANCHORS):
        tracks[k * 7] = [GENRES[(k * 5) % 26], artist, title, rand_id(r), pop, 240_000]
    # decoys near the anchors, less popular
    for k, (artist, title) in enumerate([("Video Game OST", "Halo Theme"), ("Metalik", "Halo"),
                                         ("Beyond", "Halo Effect"), ("Metallic Dreams", "Sandman")]):
        tracks[k * 7 + 3] = ["Soundtrack", artist, title, rand_id(r), 20, 200_000]
    # the same track_id under more genres: rows - distinct extra rows
    extra = r.choice(distinct, size=rows - distinct, replace=True, p=None)
    out_rows = [(t[0], t) for t in tracks] + [(GENRES[int(r.integers(0, 26))], tracks[int(i)]) for i in extra]
    order = r.permutation(len(out_rows))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for idx in order:
            genre, t = out_rows[idx]
            w.writerow([genre, t[1], t[2], t[3], max(0, t[4] - int(r.integers(0, 3))),
                        round(r.random(), 3), round(r.random(), 3), t[5], round(r.random(), 3),
                        round(r.random() ** 4, 4), KEYS[int(r.integers(0, 12))], round(r.random() * 0.5, 3),
                        round(-r.random() * 20, 3), "Major" if r.random() < 0.65 else "Minor",
                        round(r.random() * 0.3, 4), round(r.normal(118, 28), 3), "4/4", round(r.random(), 3)])
    return {"rows": rows, "distinct_ids": distinct, "artists": n_artists, "genres": len(GENRES)}


# ---------------------------------------------------------------------------
# embeddings
# ---------------------------------------------------------------------------

def embed_dev(out: Path, max_seconds: float) -> dict:
    from engine.audio import decode, limits_from_settings
    from engine.embed import Embedder
    from engine.features import make_backbone
    from engine.settings import Settings

    settings = Settings(data_dir=out / "devemb", model_cache_dir=Path("/work/data/train_dev/models"), workers=1,
                        max_track_seconds=max_seconds)
    emb = Embedder.create(make_backbone(settings), settings.resolved_head_path, settings.embedding_dim)
    rows = list(csv.DictReader(open(DEV / "tracks.csv", encoding="utf-8")))
    tv, segs, seg_owner, genres, ids, secs = [], [], [], [], [], []
    t0 = time.perf_counter()
    for i, row in enumerate(rows):
        p = DEV / "catalogue" / f"{row['track_id']}.mp3"
        if not p.exists():
            continue
        a = decode(p, emb.sample_rate, limits_from_settings(settings, for_catalogue=True))
        samples = a.samples[: int(max_seconds * emb.sample_rate)]
        e = emb.embed(samples, HOP_S)
        tv.append(e.track)
        segs.append(e.segments)
        seg_owner += [len(tv) - 1] * e.n
        genres.append(row["genre"])
        ids.append(row["track_id"])
        secs.append(len(samples) / emb.sample_rate)
        if i % 10 == 0:
            print(f"  {i}/{len(rows)} {time.perf_counter() - t0:.0f}s", flush=True)
    np.savez(out / "dev_embeddings.npz", track=np.stack(tv), segments=np.concatenate(segs),
             seg_owner=np.asarray(seg_owner), genre=np.asarray(genres), track_id=np.asarray(ids),
             seconds=np.asarray(secs), model_id=np.asarray(emb.model_id))
    return {"tracks": len(tv), "segments": int(sum(len(s) for s in segs)), "model_id": emb.model_id,
            "elapsed_s": round(time.perf_counter() - t0, 1)}


class Synth:
    """Synthetic track/segment vectors from the real dev-corpus ones (deterministic)."""

    def __init__(self, dev: Path, seed: int = 8, artist_noise: float = 0.45, track_noise: float = 0.30) -> None:
        d = np.load(dev, allow_pickle=False)
        self.real = d["track"].astype(np.float32)
        self.segs = d["segments"].astype(np.float32)
        self.owner = d["seg_owner"]
        self.model_id = str(d["model_id"])
        self.dim = self.real.shape[1]
        mu = self.real.mean(0)
        _, s, vt = np.linalg.svd(self.real - mu, full_matrices=False)
        self.mu, self.basis, self.scale = mu, vt, s / np.sqrt(len(self.real))
        self.resid = self.segs - self.real[self.owner]
        self.starts = np.searchsorted(self.owner, np.arange(len(self.real)))
        self.counts = np.bincount(self.owner, minlength=len(self.real))
        self.seed, self.artist_noise, self.track_noise = seed, artist_noise, track_noise

    def pca_noise(self, r: np.random.Generator, n: int) -> np.ndarray:
        return (r.standard_normal((n, len(self.scale))) * self.scale) @ self.basis

    def tracks(self, artist_idx: np.ndarray, genre_idx: np.ndarray) -> np.ndarray:
        r = np.random.default_rng(self.seed)
        n_real = len(self.real)
        n_genres = int(genre_idx.max()) + 1
        pools = [r.choice(n_real, size=min(n_real, 24), replace=False) for _ in range(n_genres)]
        n_art = int(artist_idx.max()) + 1
        art_genre = np.zeros(n_art, dtype=int)
        art_genre[artist_idx] = genre_idx
        centres = np.empty((n_art, self.dim), np.float32)
        for a in range(n_art):
            pick = r.choice(pools[art_genre[a]], size=3, replace=False)
            w = r.dirichlet([1.0, 1.0, 1.0])
            centres[a] = w @ self.real[pick]
        centres = centres + self.artist_noise * self.pca_noise(r, n_art)
        v = centres[artist_idx] + self.track_noise * self.pca_noise(r, len(artist_idx))
        return l2n(v.astype(np.float32))

    def segment_vectors(self, track_vec: np.ndarray, n: int, key: int) -> tuple[np.ndarray, np.ndarray]:
        """n segment vectors of a track: its vector + a real track's segment residuals (looped)."""
        r = np.random.default_rng(key % (2**32))
        src = int(r.integers(0, len(self.real)))
        idx = self.starts[src] + (np.arange(n) + int(r.integers(0, self.counts[src]))) % self.counts[src]
        segs = l2n(track_vec[None, :] + self.resid[idx] * np.float32(1.0 + 0.1 * r.standard_normal()))
        return segs, (np.arange(n) * HOP_S).astype(np.float32)


def nn_stats(v: np.ndarray, n_query: int = 200, seed: int = 0) -> dict:
    """Cosine of the 1st and 5th nearest neighbour (median over random queries)."""
    r = np.random.default_rng(seed)
    q = r.choice(len(v), size=min(n_query, len(v)), replace=False)
    sims = v[q] @ v.T
    sims[np.arange(len(q)), q] = -2
    top = -np.sort(-sims, axis=1)[:, :5]
    return {"nn1_median": round(float(np.median(top[:, 0])), 3), "nn5_median": round(float(np.median(top[:, 4])), 3),
            "random_pair_median": round(float(np.median(sims[:, :2000])), 3)}


def load_catalogue_ids(csv_path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Distinct track ids in file order, with an artist index, genre index and duration."""
    ids: dict[str, tuple[str, str, int]] = {}
    with open(csv_path, encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            ids.setdefault(row["track_id"], (row["artist_name"], row["genre"], int(row["duration_ms"])))
    artists: dict[str, int] = {}
    a_idx = np.array([artists.setdefault(v[0], len(artists)) for v in ids.values()])
    g_idx = np.array([GENRES.index(v[1]) if v[1] in GENRES else 0 for v in ids.values()])
    dur = np.array([v[2] for v in ids.values()])
    return list(ids), a_idx, g_idx, dur


def gen_vectors(out: Path, csv_path: Path) -> dict:
    from engine.catalogue import track_key_for

    syn = Synth(out / "dev_embeddings.npz")
    ids, a_idx, g_idx, dur = load_catalogue_ids(csv_path)
    v = syn.tracks(a_idx, g_idx)
    keys = np.array([track_key_for(t) for t in ids], dtype=np.int64)
    np.save(out / "track_vectors.npy", v)
    np.save(out / "track_keys.npy", keys)
    np.save(out / "track_seconds.npy", (dur / 1000).astype(np.float32))
    real = nn_stats(syn.real)
    synth_small = nn_stats(v[np.random.default_rng(1).choice(len(v), len(syn.real), replace=False)])
    return {"tracks": len(v), "dim": syn.dim, "model_id": syn.model_id,
            "segments_at_full_size": int(np.sum(np.maximum(1, dur // 1000 // HOP_S))),
            "real_dev_238": real, "synthetic_238_sample": synth_small, "synthetic_full": nn_stats(v)}


def extend_vectors(v: np.ndarray, n: int, seed: int = 9) -> np.ndarray:
    """More vectors than the catalogue (the 1M point): re-mix existing ones with fresh noise."""
    if n <= len(v):
        return v[:n]
    r = np.random.default_rng(seed)
    extra = n - len(v)
    i, j = r.integers(0, len(v), extra), r.integers(0, len(v), extra)
    w = r.uniform(0.6, 0.9, (extra, 1)).astype(np.float32)
    return np.concatenate([v, l2n(w * v[i] + (1 - w) * v[j])])


# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------

def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(args: argparse.Namespace) -> dict:
    from engine.catalogue import CatalogueDB
    from engine.settings import Settings
    from engine.store import VectorStore
    from index_builder.build import BuildOptions, run_build

    settings = Settings.from_env(env_file=None).replace(
        data_dir=args.data_dir, model_cache_dir=Path("/work/data/train_dev/models"), workers=1,
        milvus_uri=args.milvus_uri or "", index_type=args.index_type)
    t0 = time.perf_counter()
    rep = run_build(settings, BuildOptions(csv=args.csv, workers=1, progress=False))
    t_meta = time.perf_counter() - t0
    rss_meta = peak_rss_mb()
    keys = np.load(args.out / "track_keys.npy")
    vecs = np.load(args.out / "track_vectors.npy", mmap_mode="r")
    secs = np.load(args.out / "track_seconds.npy")
    syn = Synth(args.out / "dev_embeddings.npz")
    # The vectors are synthetic anyway; what must match is the backbone and the dimension.
    # (The head part of the id changed name -- the untrained default is now named by its
    # recipe, "default1-753x256", not by a weights hash -- and "+fp1" was appended later.)
    if syn.model_id.split("+")[0] != rep.model_id.split("+")[0]:
        raise SystemExit(f"vectors are for {syn.model_id}, the build's model is {rep.model_id}")
    if syn.model_id != rep.model_id:
        print(f"  vectors made as {syn.model_id}; stored under the build's model id {rep.model_id}", flush=True)
    store = VectorStore(settings.resolved_milvus_uri, rep.model_id, syn.dim, prefix=settings.collection_prefix,
                        index_type=settings.index_type, timeout_s=600)
    store.ensure_collections()
    cat = CatalogueDB(settings.catalogue_db_path)
    n = len(keys) if not args.limit else min(args.limit, len(keys))
    t1 = time.perf_counter()
    n_segs = 0
    bs = args.batch
    n_batches = 0
    n_written = 0

    def write(items: list) -> None:
        nonlocal n_batches, n_written
        store.upsert_tracks(items)
        n_batches += 1
        n_written += len(items)
        if n_batches % args.flush_every == 0:
            store.flush()
        for k, _, _, times in items:
            cat.mark_indexed(k, "synthetic", rep.model_id, len(times))
        if n_batches % 20 == 0:
            print(f"  {n_written}/{n} tracks, {n_segs} segments, {time.perf_counter() - t1:.0f}s, "
                  f"peak RSS {peak_rss_mb():.0f} MB", flush=True)

    # A batch closes at --batch tracks or --segment-batch segment vectors, whichever comes
    # first, so the build's memory is bounded by the batch, not by the catalogue.
    items: list = []
    seg_in_batch = 0
    for i in range(n):
        if i < args.segment_tracks:
            segs, times = syn.segment_vectors(vecs[i], max(1, int(secs[i] // HOP_S)), int(keys[i]))
        else:
            segs, times = np.zeros((0, syn.dim), np.float32), np.zeros(0, np.float32)
        items.append((int(keys[i]), np.asarray(vecs[i]), segs, times))
        n_segs += len(times)
        seg_in_batch += len(times)
        if len(items) >= bs or seg_in_batch >= args.segment_batch:
            write(items)
            items, seg_in_batch = [], 0
    if items:
        write(items)
    store.flush()
    t_vec = time.perf_counter() - t1
    t2 = time.perf_counter()
    index_changes = store.tune_index()  # what run_build does at the end of a build
    t_tune = time.perf_counter() - t2
    counts = (store.count_tracks(), store.count_segments())
    store.close()
    cat.close()
    return {"data_dir": str(args.data_dir), "milvus_uri": settings.resolved_milvus_uri,
            "index_type": settings.index_type, "csv_rows": rep.csv_rows, "catalogue_tracks": rep.catalogue_tracks,
            "metadata_build_s": round(t_meta, 1), "peak_rss_after_metadata_mb": round(rss_meta),
            "vector_write_s": round(t_vec, 1), "tune_index_s": round(t_tune, 1), "index_changes": index_changes, "tracks_in_milvus": counts[0], "segments_in_milvus": counts[1],
            "batch": bs, "segment_batch": args.segment_batch, "limit": n, "segment_tracks": args.segment_tracks, "peak_rss_mb": round(peak_rss_mb())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["embed-dev", "csv", "vectors", "build", "all"])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--rows", type=int, default=KAGGLE_ROWS)
    ap.add_argument("--csv", type=Path)
    ap.add_argument("--max-seconds", type=float, default=60.0, help="embed-dev: seconds of each dev track")
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--milvus-uri", default="")
    ap.add_argument("--index-type", default="auto")
    ap.add_argument("--limit", type=int, default=0, help="build: only the first N tracks get vectors")
    ap.add_argument("--segment-tracks", type=int, default=0, help="build: tracks that get segment vectors")
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--segment-batch", type=int, default=20000, help="build: segment vectors per write batch")
    ap.add_argument("--flush-every", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.csv = args.csv or args.out / ("tracks.csv" if args.rows == KAGGLE_ROWS else f"tracks_{args.rows}.csv")
    t0 = time.perf_counter()
    result: dict = {"step": args.step, "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.node()} {platform.machine()} cores={__import__('os').cpu_count()}"}
    if args.step in ("embed-dev", "all") and not (args.out / "dev_embeddings.npz").exists():
        result["embed_dev"] = embed_dev(args.out, args.max_seconds)
    if args.step in ("csv", "all"):
        result["csv"] = gen_csv(args.csv, args.rows)
    if args.step in ("vectors", "all"):
        result["vectors"] = gen_vectors(args.out, args.csv)
    if args.step == "build":
        if not args.data_dir:
            ap.error("build needs --data-dir")
        result["build"] = build(args)
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
