"""The project's error type and the one way scripts report it: these live in ``asp_io`` (which
imports nothing heavy); this module keeps the names where the synth layer has always found them."""

from asp_io import ASPError, read_json, run_cli

__all__ = ["ASPError", "read_json", "run_cli"]
