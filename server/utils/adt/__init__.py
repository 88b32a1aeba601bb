"""PostgreSQL's src/backend/utils/adt: built-in functions and operators by data type, and the registry."""
