"""Every answer the bot gave and every 👍/👎 on it, in one SQLite file, exportable.

Why store the answer and not just the vote: an evaluation needs the query (what
was sent), the model that answered and the exact tracks shown, so a vote can be
replayed against a new model.  One vote per user per answer (a second click
replaces the first).

The same row is what a button pressed after a restart rebuilds its answer from
(:meth:`FeedbackStore.get_answer`), so it also keeps what paging needs: the kind
of answer, its offset in the ranking, the further results already fetched (the
pool), the filters and the hedged guess ("It might be ...").  Files written by
older versions are upgraded in place when opened (``PRAGMA user_version``,
:data:`_MIGRATIONS`).

Export: ``synesthete-bot export-feedback out.csv`` (or ``.json``).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.fileio import atomic_write_text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    answer_id   TEXT PRIMARY KEY,
    created_at  REAL NOT NULL,
    flow        TEXT NOT NULL,
    query       TEXT NOT NULL,
    model_id    TEXT NOT NULL,
    identified  TEXT,           -- JSON: the track we recognised, or NULL
    seed        TEXT,           -- JSON: the track the results were seeded from, or NULL
    results     TEXT NOT NULL,  -- JSON: the tracks shown, in order, with similarity
    user_id     INTEGER,
    guild_id    INTEGER,
    channel_id  INTEGER
);
CREATE TABLE IF NOT EXISTS feedback (
    answer_id   TEXT NOT NULL REFERENCES answers(answer_id),
    user_id     INTEGER NOT NULL,
    vote        INTEGER NOT NULL CHECK (vote IN (-1, 1)),
    created_at  REAL NOT NULL,
    PRIMARY KEY (answer_id, user_id)
);
"""

#: Schema changes, in order; ``PRAGMA user_version`` is how many have run.  Never edit one
#: that shipped: append.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: what rebuilding an answer after a restart needs (NULL in rows stored before)
    ("ALTER TABLE answers ADD COLUMN kind TEXT",  # audio | similar | artist (bot.answers.Kind)
     "ALTER TABLE answers ADD COLUMN page_offset INTEGER",  # rank of the first result shown, minus one
     "ALTER TABLE answers ADD COLUMN pool TEXT",  # JSON: further results already fetched, in order
     "ALTER TABLE answers ADD COLUMN filters TEXT"),  # JSON: engine.filters.TrackFilter fields, or NULL
    # 2: the hedged guess of an unrecognised recording ("It might be ..."), so its pages say it after a restart
    ("ALTER TABLE answers ADD COLUMN might_be TEXT",),  # JSON: engine.catalogue.Track fields, or NULL
)

_ANSWER_COLUMNS = ("answer_id", "created_at", "flow", "query", "model_id", "identified", "seed", "results",
                   "user_id", "guild_id", "channel_id", "kind", "page_offset", "pool", "filters", "might_be")

EXPORT_FIELDS = ("answer_id", "answered_at", "voted_at", "vote", "voter_id", "flow", "query", "model_id",
                 "identified_id", "identified_title", "might_be_id", "might_be_title", "seed_id", "result_ids",
                 "result_titles", "similarities", "guild_id", "channel_id")


class FeedbackStore:
    """Thread-safe; the bot calls it through ``asyncio.to_thread`` (SQLite is blocking I/O)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        self._conn.commit()
        self._migrate()

    def _migrate(self) -> None:
        """Bring an older file up to date, in one write transaction (several bot processes may
        open the same file at once: the second finds the work done)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                version = self._conn.execute("PRAGMA user_version").fetchone()[0]
                for number, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
                    for sql in statements:
                        self._conn.execute(sql)
                    self._conn.execute(f"PRAGMA user_version = {number}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def record_answer(self, *, answer_id: str, flow: str, query: str, model_id: str,
                      identified: dict | None, seed: dict | None, results: list[dict],
                      user_id: int | None, guild_id: int | None, channel_id: int | None,
                      kind: str | None = None, offset: int = 0, pool: list[dict] | None = None,
                      filters: dict | None = None, might_be: dict | None = None) -> None:
        row = (answer_id, time.time(), flow, query, model_id, _json(identified), _json(seed), _json(results),
               user_id, guild_id, channel_id, kind, offset, _json(pool if pool is not None else []), _json(filters),
               _json(might_be))
        with self._lock, self._conn:
            self._conn.execute(f"INSERT OR REPLACE INTO answers ({', '.join(_ANSWER_COLUMNS)}) "
                               f"VALUES ({', '.join('?' * len(_ANSWER_COLUMNS))})", row)

    def get_answer(self, answer_id: str) -> dict[str, Any] | None:
        """One stored answer, JSON fields decoded (``offset``, ``kind``, ``pool``, ``filters``, ``might_be``
        are None in rows stored before they were kept), or None when there is no such answer."""
        with self._lock:
            r = self._conn.execute(f"SELECT {', '.join(_ANSWER_COLUMNS)} FROM answers WHERE answer_id = ?",
                                   (answer_id,)).fetchone()
        if r is None:
            return None
        row = dict(zip(_ANSWER_COLUMNS, r, strict=True))
        for key in ("identified", "seed", "results", "pool", "filters", "might_be"):
            row[key] = json.loads(row[key]) if row[key] else None
        row["results"] = row["results"] or []
        row["offset"] = row.pop("page_offset")
        return row

    def vote(self, answer_id: str, user_id: int, vote: int) -> None:
        if vote not in (-1, 1):
            raise ValueError("vote must be -1 or 1")
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO feedback VALUES (?,?,?,?) ON CONFLICT(answer_id, user_id) "
                "DO UPDATE SET vote=excluded.vote, created_at=excluded.created_at",
                (answer_id, user_id, vote, time.time()))

    def counts(self) -> dict[str, int]:
        with self._lock:
            a = self._conn.execute("SELECT count(*) FROM answers").fetchone()[0]
            up = self._conn.execute("SELECT count(*) FROM feedback WHERE vote=1").fetchone()[0]
            down = self._conn.execute("SELECT count(*) FROM feedback WHERE vote=-1").fetchone()[0]
        return {"answers": a, "up": up, "down": down}

    def rows(self, *, include_unvoted: bool = False) -> Iterator[dict[str, Any]]:
        """One row per vote (and per unvoted answer when asked), flat, for evaluation."""
        join = "LEFT JOIN" if include_unvoted else "JOIN"
        with self._lock:
            cur = self._conn.execute(
                f"SELECT a.answer_id, a.created_at, f.created_at, f.vote, f.user_id, a.flow, a.query, a.model_id, "
                f"a.identified, a.seed, a.results, a.guild_id, a.channel_id, a.might_be "
                f"FROM answers a {join} feedback f ON f.answer_id = a.answer_id ORDER BY a.created_at, f.created_at")
            data = cur.fetchall()
        for (aid, at, vt, vote, voter, flow, query, model, ident, seed, results, gid, cid, guess) in data:
            ident_d = json.loads(ident) if ident else {}
            guess_d = json.loads(guess) if guess else {}  # "It might be ...": what a vote may be about
            seed_d = json.loads(seed) if seed else {}
            res = json.loads(results)
            yield {
                "answer_id": aid, "answered_at": _iso(at), "voted_at": _iso(vt) if vt else "", "vote": vote or 0,
                "voter_id": voter or "", "flow": flow, "query": query, "model_id": model,
                "identified_id": ident_d.get("track_id", ""), "identified_title": _title(ident_d),
                "might_be_id": guess_d.get("track_id", ""), "might_be_title": _title(guess_d),
                "seed_id": seed_d.get("track_id", ""),
                "result_ids": [r.get("track_id", "") for r in res],
                "result_titles": [_title(r) for r in res],
                "similarities": [r.get("similarity") for r in res],
                "guild_id": gid or "", "channel_id": cid or "",
            }

    def export(self, out: Path, fmt: str | None = None, *, include_unvoted: bool = False) -> int:
        """Write CSV or JSON (by ``fmt`` or the file extension); returns the number of rows."""
        out = Path(out)
        fmt = (fmt or out.suffix.lstrip(".") or "csv").lower()
        rows = list(self.rows(include_unvoted=include_unvoted))
        if fmt == "json":
            text = json.dumps(rows, ensure_ascii=False, indent=1)
        elif fmt == "csv":
            buf = io.StringIO(newline="")
            w = csv.DictWriter(buf, fieldnames=EXPORT_FIELDS)
            w.writeheader()
            for r in rows:
                w.writerow({k: ("|".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()})
            text = buf.getvalue()
        else:
            raise ValueError(f"unknown export format {fmt!r}; use csv or json")
        atomic_write_text(out, text)  # a half-written export never replaces a good one
        return len(rows)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _title(d: dict) -> str:
    if not d:
        return ""
    return f"{d.get('artist')} – {d.get('name')}" if d.get("artist") else str(d.get("name", ""))
