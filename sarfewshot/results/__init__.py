"""Results: per-cell records, aggregation, leaderboard export and plots."""
