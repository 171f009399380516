"""chorus_shared: the thin layer every Chorus paper package stands on.

Four jobs (see DESIGN.md): models, data, grading/prompts, runs.
"""

__version__ = "0.1.0"
