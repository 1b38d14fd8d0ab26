"""Pictures of runs: learning curves (matplotlib) and rollout videos (VMAS rendering)."""
