"""The tierd engine: SQL, catalog, the hot and cold tiers, background work (map: README, Layout).

The engine knows nothing of the wire. Its public surface:

    engine = Engine(EngineConfig(data_dir=...))      # engine.engine; opens LevelDB, runs crash recovery
    session = engine.connect(user="tierd", database="tierd")   # InvalidCatalogName for others
    results = session.execute(sql)                    # simple query: 0..n statements
    results = session.execute(sql, params=[...])      # one statement with $1..$n
    session.in_transaction / session.failed           # Postgres transaction status I / T / E
    session.cancel()                                  # from another thread: interrupt
    session.close(); engine.close()

Every error is an `engine.errors.EngineError` carrying a SQLSTATE.
"""
from engine.results import StatementResult

__all__ = ["StatementResult"]
