import json

import yaml

from chorus_selfee.cli import main
from chorus_shared.runs import RunDir


def test_train_verb_fine_tunes_through_the_training_core(tmp_path, tiny_model_dir) -> None:
    # The original's data format (no ids, no run folder), as the released files are.
    data = tmp_path / "feedback.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "instruction": f"Add {k} and 1",
                    "input": "",
                    "outputs": [
                        {"output": "wrong", "feedback": "Revision is needed"},
                        {"output": str(k + 1), "feedback": "Revision is not needed"},
                    ],
                    "iteration": 2,
                }
            )
            + "\n"
            for k in range(4)
        )
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "train": {
                    "model": f"hf:{tiny_model_dir}",
                    "max_steps": 1,
                    "max_length": 256,
                    "per_device_train_batch_size": 2,
                    "report_to": "none",
                    "bf16": False,
                    "logging_steps": 1,
                    "save_steps": 100,
                }
            }
        )
    )
    out = tmp_path / "train"
    assert main(["train", "--recipe", str(recipe), "--data", str(data), "--out", str(out)]) == 0
    assert (out / "train_records.jsonl").is_file()
    assert any((out / "model").glob("*.safetensors"))
    assert (
        main(
            [
                "infer",
                "--model",
                f"hf:{out / 'model'}",
                "--limit",
                "2",
                "--infer-max-new-tokens",
                "4",
                "--out",
                str(tmp_path / "inf"),
            ]
        )
        == 0
    )
    assert len(RunDir.open(tmp_path / "inf").records()) == 2
    assert json.loads((out / "train_records.jsonl").read_text().splitlines()[0])["add_eos"]
