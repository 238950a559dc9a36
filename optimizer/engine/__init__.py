"""A campaign from config to finish: configs, the ask-and-tell loop, evaluation on threads or Ray,
deduplication, budgets, counters, failures, sweeps, progress reporting, and acting on stored campaigns."""
