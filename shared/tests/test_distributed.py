"""Ray fan-out on a real local Ray instance (2 CPU actors)."""

import os

import pytest
import ray  # installed by `make setup` (extra chorus-shared[ray])

from chorus_shared.distributed import ray_map_windows


def build_worker():
    # Runs inside each actor: the pid shows which replica did the work.
    pid = os.getpid()

    def run(window):
        return [{"id": item["id"], "double": 2 * item["x"], "pid": pid} for item in window]

    return run


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_windows_are_spread_over_replicas_and_streamed_back(local_ray) -> None:
    items = [{"id": f"i{k}", "x": k} for k in range(12)]
    windows = [items[k : k + 2] for k in range(0, 12, 2)]
    got: list[dict] = []
    done = ray_map_windows(build_worker, windows, got.extend, num_workers=2)
    assert done == 6
    assert sorted(r["id"] for r in got) == sorted(i["id"] for i in items)
    assert all(r["double"] == 2 * int(r["id"][1:]) for r in got)
    assert len({r["pid"] for r in got}) == 2
    assert os.getpid() not in {r["pid"] for r in got}


def test_no_windows_starts_nothing(local_ray) -> None:
    assert ray_map_windows(build_worker, [], lambda records: None) == 0
