"""Benchmarks: `python -m symjax_sr.bench <name> ...`. Each prints what it measured,
with ratios against a baseline measured in the same run."""
