"""The two tiers as the engine holds them: DuckDB views over both (views.py), the hot tier's
shared state (hot.py), the cold tier's manifests (cold.py), point lookups across both."""
