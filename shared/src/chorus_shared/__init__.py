"""chorus_shared: the thin layer every Chorus paper package stands on.

Four jobs (see ARCHITECTURE.md at the repository root): models, data, grading, runs.
"""

__version__ = "0.1.0"
