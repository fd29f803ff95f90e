"""Hides matplotlib from a test's program process, as a plain `pip install .` (no extras) would lack it:
`tests/conftest.py`'s `program_env` puts this folder first on PYTHONPATH."""

raise ModuleNotFoundError("No module named 'matplotlib' (hidden: tests/conftest.py, program_env)", name="matplotlib")
