"""Postgres type codecs: Arrow result columns to wire values, Bind values to Python."""
from .registry import PG_OID_METADATA, PgType, decode_param, oid_for_sql_type, param_decoder, pg_type_for

__all__ = ["PG_OID_METADATA", "PgType", "decode_param", "oid_for_sql_type", "param_decoder", "pg_type_for"]
