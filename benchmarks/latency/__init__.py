"""LiteRT latency of pruned models, latency as a budget, and accuracy at equal latency."""
