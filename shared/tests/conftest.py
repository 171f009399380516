from pathlib import Path

import pytest

from chorus_shared.testing import build_tiny_chat_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_nosys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_model(
        tmp_path_factory.mktemp("tiny_nosys") / "model", allow_system=False
    )
