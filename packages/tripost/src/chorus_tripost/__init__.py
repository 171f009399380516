"""TriPosT: a small model learns to attempt, critique and improve its own rationales."""

__version__ = "0.1.0"
