"""Evaluation of next-concept models: the paper's pre-training metrics (l2, l2-r, CA)."""
