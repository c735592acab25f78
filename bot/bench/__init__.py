"""Benchmarks: `dreamgrid bench <name> --json`. Each prints one JSON object last."""
