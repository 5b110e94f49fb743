"""Next-concept models and the concept normalizer."""
