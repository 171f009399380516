"""SelFee: an answer, then a chain of self-feedback and revisions, in one generation."""

__version__ = "0.1.0"
