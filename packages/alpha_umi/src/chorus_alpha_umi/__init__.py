"""alpha-UMi: a tool agent split into planner, caller and summarizer models."""

__version__ = "0.1.0"
