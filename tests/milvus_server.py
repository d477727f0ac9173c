"""A real Milvus standalone server for tests and benchmarks, without Docker.

The ``milvus`` PyPI wheel (2.3.5) ships the standalone server binary.  It lives in
its own virtualenv (it pins old dependencies), found in this order:

1. ``$SYNESTHETE_MILVUS_SERVER_PYTHON`` (a python that can ``import milvus``);
2. ``.venv/milvus-server/bin/python`` (what ``scripts/setup.sh`` installs);
3. the current interpreter, if it can ``import milvus``.

:func:`start` runs a tiny driver in that python, in a NEW session (process group):
the driver extracts the binaries, picks free ports (gRPC, health, etcd, ...) and
starts ``milvus run standalone``; :meth:`MilvusServerProcess.stop` signals the whole
group, so the ``milvus`` child never outlives it (a SIGTERM to the ``milvus-server``
wrapper alone orphans the child).  Usable as a context manager::

    with milvus_server.start(tmp_dir) as srv:
        VectorStore(srv.uri, ...)

``python tests/milvus_server.py [DATA_DIR]`` starts one in the foreground (Ctrl+C stops it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION = "2.3.5"

# Runs inside the milvus venv.  Prints one JSON line with the chosen ports, then waits.
_DRIVER = r"""
import json, os, shutil, sys
from milvus import MilvusServer, _initialize_data_files
base, cache = sys.argv[1], sys.argv[2]
srv = MilvusServer(wait_for_started=False)
srv.set_base_dir(base)
# the binaries (~200 MB unpacked) are extracted once into a cache and linked in
if cache:
    os.makedirs(cache, exist_ok=True)
    _initialize_data_files(cache)
    os.makedirs(os.path.join(base, "bin"), exist_ok=True)
    for name in os.listdir(os.path.join(cache, "bin")):
        dst = os.path.join(base, "bin", name)
        if not os.path.exists(dst):
            os.symlink(os.path.join(cache, "bin", name), dst)
srv.start()
print(json.dumps({"port": srv.listen_port, "health_port": srv.webservice_port,
                  "pid": srv.server_proc.pid, "version": __import__("milvus").__version__}), flush=True)
srv.wait()
"""


class MilvusServerUnavailable(RuntimeError):
    """The server package is not installed (tests skip with this reason)."""


def find_server_python() -> str:
    env = os.environ.get("SYNESTHETE_MILVUS_SERVER_PYTHON", "")
    candidates = [env] if env else []
    candidates += [str(ROOT / ".venv" / "milvus-server" / "bin" / "python"), sys.executable]
    for py in candidates:
        if py and Path(py).exists():
            ok = subprocess.run([py, "-c", "import milvus"], capture_output=True, timeout=60).returncode == 0
            if ok:
                return py
    raise MilvusServerUnavailable(
        f"the Milvus standalone server is not installed: pip install milvus=={VERSION} into its own venv "
        "(scripts/setup.sh puts it in .venv/milvus-server) or set SYNESTHETE_MILVUS_SERVER_PYTHON")


@dataclass
class MilvusServerProcess:
    data_dir: Path
    port: int
    health_port: int
    milvus_pid: int
    proc: subprocess.Popen
    owns_dir: bool = False
    log: Path = field(default=Path())

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
                return b"OK" in r.read()
        except Exception:  # noqa: BLE001
            return False

    def rss_mb(self) -> float:
        """Resident memory of the ``milvus`` process, MB (0 if gone)."""
        try:
            for line in Path(f"/proc/{self.milvus_pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the whole process group (driver + milvus child), then SIGKILL what is left."""
        if self.proc.poll() is None or _alive(self.milvus_pid):
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and (_alive(self.milvus_pid) or self.proc.poll() is None):
                time.sleep(0.2)
            for pid in (self.milvus_pid, self.proc.pid):
                if _alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> MilvusServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "synesthete" / f"milvus-{VERSION}"


def start(data_dir: Path | str | None = None, *, timeout_s: float = 120.0, python: str | None = None,
          cache_dir: Path | None = None) -> MilvusServerProcess:
    """Start a Milvus standalone on free ports; wait until /healthz says OK and gRPC answers."""
    py = python or find_server_python()
    owns = data_dir is None
    data = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="milvus-server-"))
    data.mkdir(parents=True, exist_ok=True)
    cache = cache_dir or default_cache_dir()
    log = data / "driver.log"
    proc = subprocess.Popen([py, "-c", _DRIVER, str(data), str(cache)], stdout=subprocess.PIPE,
                            stderr=open(log, "w"), text=True, start_new_session=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise RuntimeError(f"milvus driver exited ({proc.returncode}): {log.read_text()[-2000:]}")
    info = json.loads(line)
    srv = MilvusServerProcess(data, int(info["port"]), int(info["health_port"]), int(info["pid"]), proc, owns, log)
    deadline = time.monotonic() + timeout_s
    try:
        while not srv.healthy():
            if proc.poll() is not None or not _alive(srv.milvus_pid):
                tail = ""
                for p in sorted((data / "logs").glob("milvus-std*.log")):
                    tail += p.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"milvus exited during start-up: {tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"milvus not healthy after {timeout_s:.0f} s (logs in {data / 'logs'})")
            time.sleep(0.3)
        _wait_grpc(srv.uri, deadline)
    except BaseException:
        srv.stop()
        raise
    return srv


def _wait_grpc(uri: str, deadline: float) -> None:
    from pymilvus import MilvusClient

    while True:
        try:
            c = MilvusClient(uri=uri, timeout=5)
            c.list_collections()
            c.close()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


if __name__ == "__main__":
    t0 = time.monotonic()
    s = start(sys.argv[1] if len(sys.argv) > 1 else None)
    print(f"milvus {s.uri} (health :{s.health_port}, pid {s.milvus_pid}) up in {time.monotonic() - t0:.1f} s; "
          "Ctrl+C stops it", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        s.stop()
