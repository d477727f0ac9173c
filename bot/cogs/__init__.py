"""One cog per feature (RoboDanny's layout): listen (audio in), search (by name), info (help/about)."""
