"""LLM-Blender for open models: PairRanker, its aggregations, best-of-n and GenFuser."""

from chorus_blender.ranker import PairRanker, RankerConfig

__version__ = "0.1.0"
__all__ = ["PairRanker", "RankerConfig", "__version__"]
