"""Compaction: `picker` decides when a scope needs it, `task` rewrites a scope's segments."""
