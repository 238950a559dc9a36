"""How agents are improved: the campaign engine, the strategies and tasks it runs, and its front ends.

- ``engine/``: a campaign from config to finish. Configs (``config``, ``sweep_config``), the loop
  that drives a strategy by ask and tell (``campaign``, ``runner``), evaluation on threads or Ray
  (``evaluation``, ``cluster``), deduplication, budgets, counters, failures, sweeps, and the
  progress reporter (``ui``).
- ``strategies/``: one class each (APE, OPRO, INSTINCT, ADAS, symbolic learning, reflective,
  Optuna, random, portfolio), registered by name, receiving their validated ``Params``.
- ``tasks/``: examples, splits, metrics and the LLM judge; built-in tasks and task files.
- ``frontends/``: what a person uses. The ``agentopt`` command line (``cli/``), the dashboard,
  reports and status.
- ``api/``: the ``agentopt`` package itself, the public names (``library`` implements them).

Layers, checked by import-linter (pyproject.toml): the API over the front ends over the engine over
strategies and tasks; the optimizer over the archive over the agents.
"""
