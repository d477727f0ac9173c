"""What a build did, for people (a summary) and for tools (JSON).

Why a separate module: the CLI prints the summary, the demo prints it too, and
tests read the JSON; all three must agree on what was counted.
"""

from __future__ import annotations

import json
import resource
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FailedTrack:
    track_id: str
    path: str
    kind: str
    reason: str
    detail: str


@dataclass
class BuildReport:
    started_at: str = ""
    data_dir: str = ""
    csv: str | None = None
    audio_dir: str | None = None
    model_id: str = ""
    backbone: str = ""
    #: collections were dropped and recreated (model changed or --rebuild)
    recreated: bool = False
    recreate_reason: str = ""
    #: vector indexes re-picked for the collections' new size (VectorStore.tune_index)
    index_changes: list[str] = field(default_factory=list)
    csv_rows: int = 0
    catalogue_tracks: int = 0
    csv_problems: list[dict[str, Any]] = field(default_factory=list)
    matched: int = 0
    match_rules: dict[str, int] = field(default_factory=dict)
    rows_without_audio: list[str] = field(default_factory=list)
    files_without_rows: list[dict[str, str]] = field(default_factory=list)
    to_embed: int = 0
    indexed: int = 0
    skipped_unchanged: int = 0
    #: bad files whose audio did not change since they failed (not retried)
    failed_unchanged: int = 0
    failed: list[FailedTrack] = field(default_factory=list)
    removed: int = 0
    segments: int = 0
    audio_seconds: float = 0.0
    elapsed_s: float = 0.0
    #: seconds until the index was complete (vectors, landmarks, similarity model), before the
    #: identification calibration: what grows with the catalogue (the calibration's query
    #: budget is fixed, ``SYNESTHETE_IDENTIFY_CALIBRATION_QUERIES``)
    index_elapsed_s: float = 0.0
    workers: int = 0
    worker_restarts: int = 0
    peak_rss_mb: float = 0.0
    peak_rss_workers_mb: float = 0.0
    #: the similarity model's refit at the end of the build (index_builder.similarity_fit)
    similarity: dict[str, Any] = field(default_factory=dict)
    #: the identification calibration at the end of the build (index_builder.calibrate)
    calibration: dict[str, Any] = field(default_factory=dict)
    #: the build stopped early (disk full, interrupted); what was marked is consistent
    aborted: str = ""

    @property
    def x_realtime(self) -> float:
        return self.audio_seconds / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def x_realtime_index(self) -> float:
        """Audio seconds indexed per second until the index was complete (the calibration excluded)."""
        return self.audio_seconds / self.index_elapsed_s if self.index_elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["x_realtime"] = round(self.x_realtime, 2)
        d["x_realtime_index"] = round(self.x_realtime_index, 2)
        d["audio_hours"] = round(self.audio_seconds / 3600, 3)
        d["n_failed"] = len(self.failed)
        d["n_rows_without_audio"] = len(self.rows_without_audio)
        d["n_files_without_rows"] = len(self.files_without_rows)
        return d

    def measure_rss(self) -> None:
        """Peak resident memory of this process (the workers report theirs with each result).

        Why not ``RUSAGE_CHILDREN``: Linux hands a child the parent's high-water mark at fork
        (and keeps it across exec), so the workers' figure read the main process's to the
        kilobyte (issue 24); each worker's own ``VmHWM`` is its own.
        """
        self.peak_rss_mb = own_peak_rss_mb()

    def worker_peak(self, mb: float) -> None:
        """Fold one worker result's own peak RSS (MB) into the report."""
        self.peak_rss_workers_mb = max(self.peak_rss_workers_mb, float(mb or 0.0))

    def write_json(self, path: Path) -> None:
        """Atomic write, so a reader (or a full disk) never sees half a report."""
        from engine.fileio import atomic_write_bytes

        atomic_write_bytes(Path(path), json.dumps(self.to_dict(), indent=1, ensure_ascii=False).encode("utf-8"))

    def summary(self, max_items: int = 8) -> str:
        """A few lines for a terminal: counts first, then samples of what needs attention."""
        h = self.audio_seconds / 3600
        lines = [
            f"tracks indexed: {self.indexed}   skipped (unchanged): {self.skipped_unchanged}   "
            f"failed: {len(self.failed)}" + (f" (+{self.failed_unchanged} unchanged bad files)" if self.failed_unchanged else "")
            + f"   removed: {self.removed}",
            f"audio: {h:.2f} h in {self.elapsed_s:.1f} s = {self.x_realtime:.1f}x real time ("
            + (f"the index in {self.index_elapsed_s:.1f} s = {self.x_realtime_index:.1f}x, then the calibration; "
               if 0 < self.index_elapsed_s < self.elapsed_s - 0.5 else "")
            + f"{self.workers} workers); peak RSS {self.peak_rss_mb:.0f} MB main"
            + (f", {self.peak_rss_workers_mb:.0f} MB the largest worker" if self.peak_rss_workers_mb else ""),
            f"catalogue: {self.catalogue_tracks} tracks from {self.csv_rows} rows; "
            f"{self.matched} with audio, {len(self.rows_without_audio)} rows without audio, "
            f"{len(self.files_without_rows)} files without a row",
        ]
        sim = self.similarity
        if sim.get("status") == "fitted":
            lines.append(f"similarity model: {sim.get('method')}; {sim.get('tracks')} tracks, "
                         f"{sim.get('seconds')} s, {sim.get('n_components')} components")
        elif sim.get("status") == "too_small":
            lines.append("similarity model: none (fewer than 2 tracks with audio)")
        elif sim.get("status") == "too_uniform":
            lines.append(f"similarity model: none ({sim.get('reason')}); answers use the identification head's vectors")
        if self.calibration:
            lines.append(calibration_line(self.calibration))
        if self.recreated:
            lines.append(f"collections recreated: {self.recreate_reason}")
        for change in self.index_changes:
            lines.append(f"vector index re-picked: {change}")
        if self.csv_problems:
            lines.append(f"{len(self.csv_problems)} CSV problem(s), e.g.:")
            lines += [f"  line {p['line']}: {p['problem']}" for p in self.csv_problems[:max_items]]
        if self.failed:
            lines.append("bad audio files (skipped):")
            lines += [f"  {f.path}: {f.reason} ({f.detail[:160]})" for f in self.failed[:max_items]]
            if len(self.failed) > max_items:
                lines.append(f"  ... and {len(self.failed) - max_items} more")
        if self.files_without_rows:
            lines.append("files without a catalogue row:")
            lines += [f"  {f['path']}: {f['reason']}" for f in self.files_without_rows[:max_items]]
            if len(self.files_without_rows) > max_items:
                lines.append(f"  ... and {len(self.files_without_rows) - max_items} more")
        if self.aborted:
            lines.append(f"STOPPED EARLY: {self.aborted}")
        return "\n".join(lines)


def own_peak_rss_mb() -> float:
    """This process's own peak resident memory in MB: ``VmHWM`` of /proc/self/status (Linux).

    ``VmHWM`` belongs to the process's current address space, so a spawned worker's figure
    does not include its parent's pages; elsewhere ``ru_maxrss`` (KiB on Linux) is the fallback.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: A calibration result's status as the start of a sentence (its message says the rest).
_CALIBRATION_WORDS = {"fitted": "", "unchanged": "", "too_small": "", "failed": "calibration failed: "}


def calibration_line(calibration: dict[str, Any]) -> str:
    """The build summary's identification line: ``identification: calibrated on 144 ... of 36 tracks``.

    Why not ``status: message``: the message already says what happened ("calibrated on ..."),
    so the status before it read as "identification: fitted: calibrated on ...".
    """
    status = str(calibration.get("status", ""))
    prefix = _CALIBRATION_WORDS.get(status, f"{status}: " if status else "")
    return f"identification: {prefix}{calibration.get('message', '')}".rstrip()
