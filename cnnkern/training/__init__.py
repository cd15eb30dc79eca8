"""Pieces of ``python -m cnnkern.train``: data, distributed setup, checkpoints, progress output."""
