"""chorus_debate: multi-agent debate (Du et al., 2023) for open models."""

__version__ = "0.1.0"
