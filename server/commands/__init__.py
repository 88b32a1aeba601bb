"""PostgreSQL's src/backend/commands: utility statements (DDL, SET/SHOW, COPY, EXPLAIN, cursors...)."""
