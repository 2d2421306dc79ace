"""The database: models, connection, schema, and one function per job-system operation."""
