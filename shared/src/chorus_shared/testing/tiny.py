"""Tiny random-initialised chat models for tests: real transformers objects, built in seconds.

The tokenizer is a byte-level BPE trained in memory on a few sentences (so any text encodes),
with a ChatML-style chat template; the model is a 2-layer Llama with random weights.
"""

from __future__ import annotations

from pathlib import Path

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


def build_tiny_chat_model(
    path: str | Path, *, allow_system: bool = True, seed: int = 0, hidden_size: int = 32
) -> Path:
    """Save a tiny random Llama chat model and its tokenizer under ``path``; return the path."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
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
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
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
