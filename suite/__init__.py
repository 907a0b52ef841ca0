"""The benchmark and autotuning suite: timing, search, tuning, results and reports."""
