"""Test helpers shipped with chorus_shared so every paper package's tests can use them."""

from chorus_shared.testing.openai_server import FakeOpenAIServer, echo_responder
from chorus_shared.testing.tiny import build_tiny_chat_model, build_tiny_seq2seq_model

__all__ = [
    "FakeOpenAIServer",
    "build_tiny_chat_model",
    "build_tiny_seq2seq_model",
    "echo_responder",
]
