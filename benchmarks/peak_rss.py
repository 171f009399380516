"""Peak memory of a command: run it as a child and watch the RSS of its whole process tree.

Usage: ``peak_rss.py [--limit-mb 2048] [--interval 0.2] -- CMD ARGS...``

Every ``--interval`` seconds the resident set sizes of the child and all its descendants are
summed (psutil when installed, otherwise ``/proc``); the largest sum is the peak. Sampling
can miss a spike shorter than the interval, so the kernel's own figure is printed too:
``getrusage(RUSAGE_CHILDREN).ru_maxrss``, the peak of the single largest waited-for
descendant (not a sum over the tree).

Exit status: the command's own when it fails (128 + N when signal N killed it); otherwise 3
when the larger of the two peaks is over the limit, 0 when within it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import subprocess
import sys
import time

OVER_LIMIT = 3

try:  # psutil is optional: /proc gives the same figures on Linux.
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None


def _proc_children() -> dict[int, list[int]]:
    """Return parent pid -> child pids for every process visible in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the process ended while we looked
            continue
        # The command name is in parentheses and may contain spaces: parse after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _proc_rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def tree_rss_bytes(root: int) -> int:
    """Return the summed RSS in bytes of ``root`` and all its descendants (0 once gone)."""
    if psutil is not None:
        try:
            proc = psutil.Process(root)
            procs = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):  # it ended between the two calls
                total += p.memory_info().rss
        return total
    children = _proc_children()
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _proc_rss_bytes(pid)
        stack.extend(children.get(pid, []))
    return total


def children_maxrss_mb() -> float:
    """Return the kernel's peak RSS of the largest waited-for descendant, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the options and the command to run."""
    p = argparse.ArgumentParser(
        description="Run a command and report the peak RSS of its process tree.",
        usage="%(prog)s [--limit-mb MB] [--interval S] -- CMD ARGS...",
    )
    p.add_argument("--limit-mb", type=float, default=2048.0, help="fail above this (MiB)")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = p.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        p.error("give the command to measure after --, e.g. peak_rss.py -- python run.py")
    if args.interval <= 0:
        p.error("--interval must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the command, print the peaks; return the exit status described above."""
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        child = subprocess.Popen(args.command)
    except OSError as exc:
        print(f"peak_rss: cannot run {args.command[0]!r}: {exc}", file=sys.stderr)
        return 127
    peak = 0
    # Keep measuring until the child exits. Ctrl-C already reaches the child through the
    # terminal's process group, so it is not sent twice; a SIGTERM aimed at us is passed on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, _frame: child.send_signal(signum))
    while True:
        peak = max(peak, tree_rss_bytes(child.pid))
        try:
            returncode = child.wait(timeout=args.interval)
            break
        except subprocess.TimeoutExpired:
            continue
    elapsed = time.perf_counter() - start
    peak_mb = peak / (1024 * 1024)
    kernel_mb = children_maxrss_mb()
    # The kernel's figure catches a single process's spike that fell between two samples.
    over = max(peak_mb, kernel_mb) > args.limit_mb
    print(f"peak RSS of the process tree (sampled every {args.interval:g} s): {peak_mb:.0f} MiB")
    print(f"ru_maxrss of the largest child (getrusage RUSAGE_CHILDREN): {kernel_mb:.0f} MiB")
    print(
        f"limit {args.limit_mb:.0f} MiB: "
        f"{'OVER' if over else 'ok'} (checked against the larger of the two)"
    )
    print(
        f"command exited with status {returncode} after {elapsed:.1f} s; "
        f"sampler: {'psutil' if psutil is not None else '/proc'}"
    )
    if returncode != 0:
        return returncode if returncode > 0 else 128 - returncode
    return OVER_LIMIT if over else 0


if __name__ == "__main__":
    sys.exit(main())
