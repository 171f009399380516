"""The shared pytest fixtures of chorus_shared.testing.plugin, used by every package's tests."""

from __future__ import annotations

import os

import torch

from chorus_shared.models import Completion, SamplingParams
from chorus_shared.testing import plugin
from chorus_shared.testing.plugin import FakeChatModel

# What a package's conftest does (by import); pytest finds the fixtures by these names.
fake_chat_model = plugin.fake_chat_model
no_progress_bars = plugin.no_progress_bars
one_torch_thread = plugin.one_torch_thread


def test_fake_chat_model_records_what_it_was_sent(fake_chat_model) -> None:
    assert fake_chat_model is FakeChatModel
    model = fake_chat_model(lambda c: "two words" if len(c) == 1 else Completion(text="x"))
    history = [{"role": "user", "content": "a b c"}]
    params = SamplingParams(max_new_tokens=3)
    first = model.chat([history, [*history, *history]], params)
    history.append({"role": "assistant", "content": "later"})  # a caller keeps appending
    assert [c.text for c in first] == ["two words", "x"]
    assert (first[0].prompt_tokens, first[0].completion_tokens) == (3, 2)
    assert model.calls[0][0] == [{"role": "user", "content": "a b c"}]
    assert model.batch_sizes == [2] and model.params == [params]


def test_autouse_fixtures_quiet_bars_and_one_torch_thread() -> None:
    assert os.environ["CHORUS_NO_PROGRESS"] == "1"
    assert torch.get_num_threads() == 1
