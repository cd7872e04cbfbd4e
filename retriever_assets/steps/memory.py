"""Peak resident memory and seconds per phase of one step, and memory handed back to the OS after it.

Dagster runs every step of an in-process run in one process, so a step's peak must be measured from its own start:
on Linux the kernel's high-water mark (VmHWM) is reset by writing "5" to /proc/self/clear_refs and read at the end
(exact, no sampling); elsewhere a sampling thread stands in (`core.training.PeakRss`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from retriever_assets.core.training import PeakRss, release_freed_memory

MIB = 2**20


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def rss_mib() -> float:
    """This process's resident memory now, MiB."""
    return round(PeakRss.current() / MIB, 1)


class StepMeter:
    """`with StepMeter() as meter:` around a step; `with meter.phase("name"):` around its parts.

    On entry freed memory is returned to the OS (gc + glibc malloc_trim) and the peak is reset; on exit the peak is
    read and memory is returned again, so the next step starts from what this one really keeps.
    `report()` -> {"peak_rss_mib", "rss_after_mib", "phase_seconds"}.
    """

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.peak_mib: float | None = None
        self.rss_after_mib: float | None = None
        self._sampler: PeakRss | None = None

    def __enter__(self) -> StepMeter:
        release_freed_memory()
        if not _reset_high_water_mark():
            self._sampler = PeakRss(interval=0.05).__enter__()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self._sampler is not None:
            self._sampler.__exit__(*exc)
            peak = self._sampler.peak
        else:
            peak = (_status_kib("VmHWM") or 0) * 1024
        self.peak_mib = round(peak / MIB, 1)
        release_freed_memory()
        self.rss_after_mib = rss_mib()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.perf_counter() - t0, 3)

    def report(self) -> dict:
        return {"peak_rss_mib": self.peak_mib, "rss_after_mib": self.rss_after_mib,
                "phase_seconds": dict(self.phases)}
