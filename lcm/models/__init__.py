"""Next-concept models: the families, their shared generation and the model directory."""
