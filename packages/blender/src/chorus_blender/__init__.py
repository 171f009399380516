"""LLM-Blender for open models: PairRanker, its aggregations, best-of-n and GenFuser.

Importing the package (or running ``chorus-blender --help``) loads no torch: the model
classes are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chorus_blender.blender import Blender
    from chorus_blender.ranker import PairRanker, RankerConfig

__version__ = "0.1.0"
__all__ = ["Blender", "PairRanker", "RankerConfig", "__version__"]

_LAZY = {
    "Blender": "chorus_blender.blender",
    "PairRanker": "chorus_blender.ranker",
    "RankerConfig": "chorus_blender.ranker",
}


def __getattr__(name: str) -> Any:
    # PEP 562: the heavy classes load when first asked for, not on `import chorus_blender`.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'chorus_blender' has no attribute {name!r}")
