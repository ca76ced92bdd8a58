"""Loss logging: a resumable CSV log with plotting, and running means."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .files import atomic_write

__all__ = ["LossLog", "RunningMeans"]

_FIXED_COLUMNS = ("step", "epoch")


class LossLog:
    """Append-only CSV of losses with columns ``step, epoch, <sorted loss names>``.

    The file is opened per append (and so flushed), so a killed run loses at
    most the row being written. If the file already exists with the same
    header, rows are appended to it, which is what resuming a run needs; a
    different set of loss names raises ``ValueError`` instead of silently
    writing misaligned columns.
    """

    def __init__(self, csv_path: str | os.PathLike[str]) -> None:
        self.path = Path(csv_path)
        self._header: list[str] | None = None  # known once checked or written

    def _read_header(self) -> list[str] | None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        with self.path.open(newline="", encoding="utf-8") as f:
            return next(csv.reader(f), None)

    def append(self, step: int, epoch: float, values: Mapping[str, float]) -> None:
        """Append one row; ``values`` maps loss names to numbers (0-d tensors are fine)."""
        clash = set(values) & set(_FIXED_COLUMNS)
        if clash:
            raise ValueError(f"loss names {sorted(clash)} clash with the fixed CSV columns")
        header = [*_FIXED_COLUMNS, *sorted(values)]
        if self._header is None:
            existing = self._read_header()
            if existing is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("w", newline="", encoding="utf-8") as f:
                    csv.writer(f).writerow(header)
                existing = header
            self._header = existing
        if header != self._header:
            raise ValueError(f"loss names {header[2:]} do not match the columns of {self.path}: {self._header[2:]}")
        # repr(float) round-trips exactly, so rows() returns what was logged.
        row = [str(int(step)), repr(float(epoch))]
        row += [repr(float(values[k])) for k in header[2:]]
        with self.path.open("a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(row)

    def rows(self) -> list[dict[str, Any]]:
        """All rows as dicts: ``step`` is an int, everything else a float."""
        if not self.path.exists():
            return []
        with self.path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            out = []
            for raw in reader:
                row: dict[str, Any] = {k: float(v) for k, v in raw.items()}
                row["step"] = int(raw["step"])
                out.append(row)
        return out

    def truncate_after(self, step: int) -> None:
        """Drop rows with ``step`` greater than ``step``.

        When resuming from a checkpoint older than the newest log rows, this
        keeps the log from holding the same steps twice.
        """
        header = self._read_header()
        if header is None:
            return
        kept = [r for r in self.rows() if r["step"] <= step]
        with atomic_write(self.path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for r in kept:
                writer.writerow([str(r["step"])] + [repr(r[k]) for k in header[1:]])

    def plot(self, png_path: str | os.PathLike[str]) -> Path:
        """Plot every loss against step, one subplot each, into a PNG (atomically)."""
        import matplotlib

        matplotlib.use("Agg")  # headless: training machines have no display
        import matplotlib.pyplot as plt

        rows = self.rows()
        header = self._read_header() or list(_FIXED_COLUMNS)
        keys = header[2:]
        png_path = Path(png_path)
        png_path.parent.mkdir(parents=True, exist_ok=True)

        fig, axes = plt.subplots(max(1, len(keys)), 1, sharex=True, squeeze=False, figsize=(8, 2.2 * max(1, len(keys))))
        try:
            axes = axes[:, 0]
            if not keys or not rows:
                axes[0].text(0.5, 0.5, "no data yet", ha="center", va="center", transform=axes[0].transAxes)
            steps = [r["step"] for r in rows]
            for ax, key in zip(axes, keys):
                ax.plot(steps, [r[key] for r in rows], linewidth=1.0)
                ax.set_ylabel(key)
                ax.grid(True, alpha=0.3)
            axes[-1].set_xlabel("step")
            fig.tight_layout()
            with atomic_write(png_path) as f:
                fig.savefig(f, format="png", dpi=100)
        finally:
            plt.close(fig)  # pyplot keeps every figure alive until closed
        return png_path


class RunningMeans:
    """Per-key running means since the last :meth:`reset` (for progress bars).

    Keys are counted separately, so a loss reported only on some steps is
    averaged over the steps that reported it.
    """

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def update(self, values: Mapping[str, float]) -> None:
        """Add one value per key (numbers or 0-d tensors)."""
        for key, value in values.items():
            self._sums[key] = self._sums.get(key, 0.0) + float(value)
            self._counts[key] = self._counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        """Mean of each key since the last reset (keys in first-seen order)."""
        return {k: self._sums[k] / self._counts[k] for k in self._sums}

    def counts(self) -> dict[str, int]:
        """Number of values accumulated per key since the last reset."""
        return dict(self._counts)

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._sums.clear()
        self._counts.clear()
