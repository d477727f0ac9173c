"""Plot latency against catalogue size from the benches' JSON (matplotlib: a bench-only dependency).

    python bench/plot_scale.py --names /work/data/scale/bench_name_search.json \
        [--vectors RUN.json [RUN2.json ...]] --out docs/scale_latency.png

Several --vectors files are merged (e.g. the 10k-232k run and a separate 1M run).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", type=Path)
    ap.add_argument("--vectors", type=Path, nargs="*", default=[])
    ap.add_argument("--out", type=Path, default=Path("docs/scale_latency.png"))
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=90)
    if args.names and args.names.exists():
        d = json.loads(args.names.read_text())["sizes"]
        ns = sorted(int(n) for n in d)
        for key, label, style in (("engine", "name search (FTS5 trigram + rapidfuzz), CPU p95", "o-"),
                                  ("fts_or_v0", "name search v0 (trigram OR + bm25), CPU p95", "s--"),
                                  ("rapidfuzz", "name search rapidfuzz over all, CPU p95", "^:")):
            pts = [(n, d[str(n)][key]["cpu_p95_ms"]) for n in ns if key in d[str(n)]]
            if pts:
                ax.plot(*zip(*pts), style, label=label)
    res = [r for f in args.vectors if f.exists() for r in json.loads(f.read_text())["results"]]
    if res:
        for backend, index, pkey, label, style in (
                ("server", "HNSW", {"ef": 64}, "vectors: server HNSW ef 64, p95", "D-"),
                ("server", "FLAT", {}, "vectors: server FLAT, p95", "v--"),
                ("lite", "FLAT", {}, "vectors: milvus-lite FLAT, p95", "x:"),
                ("lite", "IVF_FLAT", {"nprobe": 16}, "vectors: milvus-lite IVF_FLAT nprobe 16, p95", "+:")):
            pts = []
            for r in res:
                if r["backend"] == backend and r["index"] == index:
                    for s in r["searches"]:
                        if s["params"] == pkey:
                            pts.append((r["n"], s["single_p95_ms"]))
            if pts:
                ax.plot(*zip(*sorted(pts)), style, label=label)
    ax.axhline(20, color="grey", lw=0.8, ls="--")
    ax.text(10_500, 22, "20 ms (name search target)", fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("catalogue size (tracks)")
    ax.set_ylabel("p95 latency (ms)")
    ax.set_title("Latency vs catalogue size (2 shared cores)", fontsize=10)
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=6.5, loc="upper left")
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(args.out, args.out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
