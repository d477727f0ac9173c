"""How long a ``synesthete`` command takes from the shell, and which heavy modules it loads.

Why: a name search needs milliseconds of SQLite work, but a command that opens the whole
engine first imports torch, scipy and pymilvus and starts milvus-lite (~2 s on 2 cores).
This runs each command as a person does (the installed console script, a fresh process
each time) against an existing index and prints the wall time (median and best of
``--repeat`` runs) and which of the heavy modules the command imported.

    python bench/cli_startup.py --data-dir ~/.local/share/synesthete [--repeat 5]
        [--command "search wrzone" --command about ...]

Run by hand (not a test: timings depend on the machine); results with the command, the
machine and the date go to docs/performance.md ("CLI start-up").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "scipy", "sklearn", "pymilvus", "milvus_lite", "aiohttp", "essentia", "numpy")
DEFAULT_COMMANDS = ("search wrzone", "about", "search \"track 1\" -n 25")

#: the command in a process that reports which heavy modules it imported (stderr, last line)
_PROBE = ("import sys, json, engine.cli as c\n"
          "try:\n    rc = c.main(sys.argv[1:])\n"
          "finally:\n    sys.stderr.write('\\nHEAVY ' + json.dumps(sorted(m for m in %r if m in sys.modules)) + '\\n')\n"
          "sys.exit(rc)\n")


def script() -> list[str]:
    """The installed ``synesthete`` beside this interpreter, else ``python -m engine.cli``."""
    exe = Path(sys.executable).with_name("synesthete")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "engine.cli"]


def time_command(args: list[str], repeat: int) -> list[float]:
    """Wall seconds of ``repeat`` fresh runs (output discarded; a failing run stops the bench)."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(script() + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT, check=False)
        out.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return out


def heavy_modules(args: list[str]) -> list[str]:
    """Which of ``HEAVY`` the command imported (one extra run)."""
    proc = subprocess.run([sys.executable, "-c", _PROBE % (HEAVY,), *args], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    for line in reversed(proc.stderr.splitlines()):
        if line.startswith("HEAVY "):
            return json.loads(line[6:])
    return ["?"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True, help="an index built by synesthete-index")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--command", action="append", help="a synesthete command line (default: search, about)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args()
    base = ["--env-file", os.devnull, "--data-dir", str(a.data_dir.expanduser())]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")  # other work on the machine
    rows = []
    for cmd in a.command or DEFAULT_COMMANDS:
        args = base + shlex.split(cmd)
        times = time_command(args, a.repeat)
        rows.append({"command": f"synesthete {cmd}", "median_s": round(statistics.median(times), 3),
                     "best_s": round(min(times), 3), "runs": a.repeat, "imports": heavy_modules(args)})
        print(f"{rows[-1]['command']:<40} median {rows[-1]['median_s']:.2f} s  best {rows[-1]['best_s']:.2f} s  "
              f"heavy imports: {', '.join(rows[-1]['imports']) or 'none'}")
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
            "cpus": os.cpu_count(), "load_1min_at_start": round(load, 2), "python": platform.python_version()}
    print(json.dumps(meta))
    if a.json:
        a.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
