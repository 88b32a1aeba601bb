"""PostgreSQL's src/backend/parser: raw parsing (pglast) and semantic analysis into Query trees."""
