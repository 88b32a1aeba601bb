"""PostgreSQL's src/backend/optimizer: the planner and its cost model."""
