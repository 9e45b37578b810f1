"""Where operators ask for rollouts and follow them (``kernel rollout`` uses the same)."""

ROLLOUTS = "/.kernel/rollout/v1/rollouts"
