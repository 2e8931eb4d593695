"""Label files, tweet texts, images, the split and the synthetic sample: plain Python, numpy and PIL (no torch)."""
