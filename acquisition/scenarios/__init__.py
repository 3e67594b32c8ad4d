"""The built-in scenarios (TOML files, read with importlib.resources by acquisition.scenario)."""

__all__: list[str] = []  # nothing here: the scenario TOML files are package data
