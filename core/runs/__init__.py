"""The run folder and what it keeps: checkpoints, feature caches, the dashboard's view, reviewers' verdicts."""
