"""Small helpers shared by the cogs (RoboDanny keeps these in cogs/utils; ours sit beside)."""
