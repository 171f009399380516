"""--ray: windows fan out over real Ray actors and stream into one run directory."""

import json
from pathlib import Path

import ray  # installed by `make setup` (extra chorus-shared[ray])

from chorus_debate.cli import main


def test_ray_run_matches_a_local_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    common = [
        "generate", "--task", "arithmetic", "--method", "debate", "--limit", "4",
        "--window", "1", "--max-new-tokens", "6", "--temperature", "0",
        "--model", f"hf:{tiny_model_dir}",
    ]  # fmt: skip
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main([*common, "--out", str(tmp_path / "ray"), "--ray", "--ray-workers", "2"]) == 0
    finally:
        ray.shutdown()
    assert main([*common, "--out", str(tmp_path / "local")]) == 0

    def records(run: str) -> dict[str, dict]:
        lines = (tmp_path / run / "records.jsonl").read_text().splitlines()
        return {r["id"]: r for r in map(json.loads, lines)}

    on_ray, local = records("ray"), records("local")
    assert sorted(on_ray) == sorted(local) and len(local) == 4
    # Greedy decoding: the replicas produce exactly what one local process does.
    for key, record in local.items():
        assert on_ray[key]["agents"] == record["agents"]
