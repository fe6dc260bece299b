"""The plain PyTorch training loop and its gradient probes (no Ray here)."""
