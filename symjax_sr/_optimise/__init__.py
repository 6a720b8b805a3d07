"""Batched constant optimisers, one family per file; `symjax_sr._constants` is the entry point."""
