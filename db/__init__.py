"""PostgreSQL: the embedded server launcher, migrations of the whole platform schema, queries."""
