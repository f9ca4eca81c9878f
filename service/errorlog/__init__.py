"""Error logs: grouping repeats of one error, resolving and regressions."""
