"""The guard: scorers, calibration, verdicts, query and evaluation on prompts it never saw."""
