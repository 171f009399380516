"""Fan generation out over a Ray cluster: one model replica per worker, windows streamed back.

The driver keeps the run directory (one writer, so resume stays exact); each Ray actor builds
its own replica once (model loaded on its GPU or CPU share) and turns windows of items into
records. Finished windows come back in completion order and are appended as they arrive, so a
crash of the driver or a worker loses only windows that were still in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ray.actor import ActorHandle

Record = dict[str, Any]
WindowFn = Callable[[list[Record]], list[Record]]


class _Replica:
    """One Ray actor: builds its model replica once, then turns windows into records."""

    def __init__(self, factory: Callable[[], WindowFn]) -> None:
        self.run_window = factory()

    def run(self, window: list[Record]) -> list[Record]:
        return self.run_window(window)


def ray_map_windows(
    build_worker: Callable[[], WindowFn],
    windows: Sequence[list[Record]],
    on_records: Callable[[list[Record]], None],
    *,
    num_workers: int | None = None,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    address: str | None = None,
    in_flight_per_worker: int = 2,
) -> int:
    """Run ``windows`` on Ray actors built by ``build_worker``; return the number of windows done.

    ``build_worker`` runs once inside each actor and returns the function that turns a window
    into records (it must be picklable: a module-level function or a closure over plain data).
    ``on_records`` runs on the driver for every finished window. Connects to ``address``
    (``"auto"`` for an existing cluster) or starts a local Ray when none is running.
    """
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "--ray needs Ray: pip install 'chorus-shared[ray]' (make setup installs it)"
        ) from exc
    if not windows:
        return 0
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    if num_workers is None:
        resources = ray.cluster_resources()
        if gpus_per_worker > 0:
            num_workers = max(1, int(resources.get("GPU", 0) // gpus_per_worker))
        else:
            num_workers = max(1, int(resources.get("CPU", 1) // max(cpus_per_worker, 1e-9)))
    num_workers = max(1, min(num_workers, len(windows)))

    actor = ray.remote(_Replica).options(num_gpus=gpus_per_worker, num_cpus=cpus_per_worker)
    # ActorClass.remote always returns a handle; Ray annotates it as `handle | type` so that
    # checkers see the class's methods, which ray.kill (typed for handles) then refuses.
    replicas = [
        cast("ActorHandle[_Replica]", actor.remote(build_worker)) for _ in range(num_workers)
    ]
    queue = list(range(len(windows)))
    in_flight: dict[Any, int] = {}  # object ref -> replica index
    done = 0

    def submit(replica: int) -> None:
        index = queue.pop(0)
        in_flight[replicas[replica].run.remote(windows[index])] = replica

    try:
        for replica in range(num_workers):
            for _ in range(in_flight_per_worker):
                if queue:
                    submit(replica)
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            replica = in_flight.pop(ready[0])
            on_records(ray.get(ready[0]))
            done += 1
            if queue:
                submit(replica)
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        for handle in replicas:
            ray.kill(handle)
    return done
