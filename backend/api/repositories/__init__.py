"""Queries of the record store, one module per table; services call these, never raw SQL."""
