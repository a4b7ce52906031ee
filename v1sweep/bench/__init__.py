"""Speed benchmarks behind `v1sweep bench`; each prints a ratio against a baseline run alongside."""
