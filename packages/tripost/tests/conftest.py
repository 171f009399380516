from chorus_shared.testing.plugin import tiny_model_dir  # noqa: F401 - a fixture, found by name
