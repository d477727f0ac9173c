"""``synesthete-index eval``: identification and similarity, several configurations side by side.

What is measured, on one catalogue and one query set, in one run:

* **identification**: for each query (a 10-s excerpt, clean or recorded by a
  phone: ``queries.csv`` columns ``query_file,kind,track_id,offset_s``), is the
  right track first (top-1) or among the first five (top-5), per query kind;
* **similarity**: for each catalogue track, its 5 nearest *other* tracks by
  track vector (cosine); precision@5 of "same artist" and "shares a genre";
* **latency** per query (features + search; decoding is reported apart, it is
  the same for every configuration).

Configurations (``--configs``): ``fingerprint`` (landmarks only),
``musicnn`` (pretrained backbone + the untrained default head, as the service
runs without a trained head), ``musicnn-trained`` (+ the head at ``--head``),
``logmel`` (when that backbone exists), ``combined`` / ``combined-trained``
(fingerprint + that embedding's segment vote, decided by the service's own rule,
:func:`engine.identify.decide`: a top-1 is what the service would answer,
"no answer" counts as a miss).
A **baseline is always included**: mean/std statistics of MFCC + chroma +
spectral contrast (librosa; eval is a dev tool, the engine never imports
librosa) compared by cosine, so every figure has a reference measured the same way.

Honesty rules built in: a head trained with labels (``--supervised`` in train)
records them in its metadata, and its similarity figure on those labels is
flagged ``scored_on_training_labels`` in the JSON and the table.  Embedding
identification uses exact numpy search and the service's own
``engine.identify.segment_vote``; ``--service-data-dir`` additionally runs every query through
``SynestheteService.recommend`` on a built index (the real path, with Milvus).

Backbone features of catalogue tracks come from (and go to) the same cache as
``train`` (``<data_dir>/feature_cache/<model id>/``), so an eval after a train
or a second eval costs little more than the queries.

This module is the command (arguments, the order of the phases, the printed table);
the phases live in :mod:`index_builder.evaluation`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from index_builder.evaluation import BASELINE, DEFAULT_CONFIGS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queries", type=Path, default=None, help="queries.csv (default: <corpus>/queries.csv)")
    p.add_argument("--csv", type=Path, default=None, help="catalogue tracks CSV (Kaggle layout)")
    p.add_argument("--audio", type=Path, default=None, help="folder of the catalogue's audio")
    p.add_argument("--corpus", type=Path, default=None,
                   help="a corpus folder: tracks.csv + catalogue/ + queries.csv")
    p.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS,  # never clobber the top-level --data-dir
                   help="where the feature cache lives (default: settings)")
    p.add_argument("--head", type=Path, default=None, help="trained head for musicnn-trained (default <data_dir>/head.pt)")
    p.add_argument("--first-seconds", type=float, default=None, help="use only the first N s of each query")
    p.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                   help=f"any of {', '.join(DEFAULT_CONFIGS)} (the MFCC baseline always runs)")
    p.add_argument("--limit-queries", type=int, default=None, help="at most N queries per kind (quick runs)")
    p.add_argument("--service-data-dir", type=Path, default=None,
                   help="also run every query through SynestheteService.recommend on the index built here")
    p.add_argument("--window-s", type=float, default=None,
                   help="embed only a window of this many seconds of each catalogue track around its queries "
                        "(compute-limited runs; fewer distractor segments; the fingerprint always sees whole tracks)")
    p.add_argument("--json", type=Path, default=None, help="write all figures (and per-query details) here")
    p.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    """Run the evaluation ``args`` describe, print the table (and write ``--json``); 0."""
    from index_builder.evaluation.baseline import baseline_rankings
    from index_builder.evaluation.catalogue import catalogue_pass, catalogue_vectors, uses_fingerprints
    from index_builder.evaluation.data import catalogue_of, embed_configs, limit_per_kind, read_queries
    from index_builder.evaluation.figures import Inputs, build_report
    from index_builder.evaluation.run import run_queries, service_path
    from index_builder.runtime import settings_from_args

    settings = settings_from_args(args)
    qpath = args.queries or (args.corpus / "queries.csv" if args.corpus else None)
    if qpath is None:
        raise SystemExit("give --queries (or --corpus with a queries.csv)")
    items = catalogue_of(args, settings)
    known = {it.track_id for it in items}
    queries = limit_per_kind([q for q in read_queries(qpath) if q.track_id in known], args.limit_queries)
    progress = not args.no_progress
    configs = list(dict.fromkeys(args.configs))
    started = time.perf_counter()

    emb = embed_configs(settings, configs, args.head)
    cat = catalogue_pass(items, queries, emb, settings, use_fp=uses_fingerprints(configs), window_s=args.window_s,
                         progress=progress)
    catalogue_s = time.perf_counter() - started
    track_vecs, seg_tables = catalogue_vectors(emb, cat, settings)
    run = run_queries(queries, items, emb, seg_tables, cat.fp_index, settings, configs,
                      first_seconds=args.first_seconds, progress=progress)
    # MFCC baseline identification: nearest track vector to the query's statistics
    track_vecs[BASELINE], run.rank[BASELINE] = baseline_rankings(cat.mfcc, run.mfcc)
    for row, ranking in zip(run.rows, run.rank[BASELINE]):
        row[BASELINE] = [items[j].track_id for j in ranking]
    service = None
    if args.service_data_dir:  # the real path, with Milvus, on an index built there
        service = service_path(settings.replace(data_dir=Path(args.service_data_dir)), queries)

    report = build_report(Inputs(items, queries, configs, emb, track_vecs, settings), run,
                          musicnn_features=cat.features["musicnn"], first_seconds=args.first_seconds,
                          window_s=args.window_s, catalogue_s=catalogue_s, fp_build_s=cat.fp_build_s,
                          service=service)
    _print_table(report, sorted(report["queries"]))
    for k, v in report["what_if"].items():
        print(f"what if: {k} = {_fmt(v)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        print(f"wrote {args.json}")
    if cat.fp_index is not None:
        cat.fp_index.close()
    return 0


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}" if v < 10 else f"{v:.0f}"
    return str(v)


def _print_table(report: dict[str, Any], kinds: list[str]) -> None:
    cols = [f"{k}_top1" for k in kinds] + [f"{k}_top5" for k in kinds] + [
        "p5_artist", "p5_genre", "p5_genre_artist_filtered", "p5_artist_x_baseline", "p5_genre_x_baseline",
        "latency_ms_median"]
    head = ["config", *cols]
    lines = [head]
    for name, r in report["results"].items():
        flag = " (*)" if r.get("scored_on_training_labels") else ""
        lines.append([name + flag, *[_fmt(r.get(c)) for c in cols]])
    if report.get("service") and "error" not in report["service"]:
        s = report["service"]
        lines.append(["service.recommend", *[_fmt(s.get(c)) for c in cols]])
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    for j, row in enumerate(lines):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    print(f"chance: P@5 artist {report['chance']['p5_artist']:.3f}, genre {report['chance']['p5_genre']:.3f}; "
          f"queries {report['queries']}; decode {report['decode_ms_median']:.0f} ms median")
    if any(r.get("scored_on_training_labels") for r in report["results"].values()):
        print("(*) scored on labels the head was trained on: not a figure for the docs")
    if report.get("service") and "error" in report["service"]:
        print(f"service path: {report['service']['error']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="synesthete-index eval")
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
