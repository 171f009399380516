"""CPU accounting shared by the benchmarks: how much of the machine this process and the
others used while a block ran.

On 2 shared cores another torch job slows a timing far more than its share, so every
benchmark prints the share other processes took next to its figures.
"""

from __future__ import annotations

import os
import resource


def machine_busy_seconds() -> float | None:
    """Return the busy CPU-seconds of the whole machine since boot; None without /proc."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = ticks
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """Return the user + system CPU-seconds this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
