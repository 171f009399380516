"""Tiny random-initialised chat models for tests: real transformers objects, built in seconds.

The tokenizer is a byte-level BPE trained in memory on a few sentences (so any text encodes),
with a ChatML-style chat template; the model is a 2-layer Llama with random weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHATML = (
    "{% for m in messages %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Like templates of models that refuse a system turn (Mistral-7B-Instruct-v0.2, Gemma).
CHATML_NO_SYSTEM = (
    "{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}" + CHATML
)

_CORPUS = [
    "The answer is 42. Compute 3+4*5-2 step by step, then box it: \\boxed{21}.",
    "Agent 2 answered: the final answer is (B). Let me check each step again.",
    "- Ada Lovelace was a mathematician born in London in 1815.",
    "yes no uncertain 0 1 2 3 4 5 6 7 8 9 + - * / ( ) = , .",
]


def _tiny_tokenizer() -> Any:
    """Return the tiny byte-level BPE tokenizer, trained in memory (no chat template)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )


def build_tiny_chat_model(
    path: str | Path, *, allow_system: bool = True, seed: int = 0, hidden_size: int = 32
) -> Path:
    """Save a tiny random Llama chat model and its tokenizer under ``path``; return the path."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tokenizer = _tiny_tokenizer()
    tokenizer.chat_template = CHATML if allow_system else CHATML_NO_SYSTEM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_seq2seq_model(path: str | Path, *, seed: int = 0, d_model: int = 32) -> Path:
    """Save a tiny random T5 (encoder-decoder, no chat template) under ``path``; return it.

    Stands in for Flan-T5 in tests: the same tiny BPE tokenizer, ``<|im_end|>`` ending a
    sequence, and the padding token ``<|endoftext|>`` also starting the decoder (T5's way).
    """
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    path = Path(path)
    tokenizer = _tiny_tokenizer()
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=2 * d_model,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config.decoder_start_token_id = tokenizer.pad_token_id
    model = T5ForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.decoder_start_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
