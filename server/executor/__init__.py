"""PostgreSQL's src/backend/executor: plan nodes, expression evaluation, INSERT/UPDATE/DELETE, constraints."""
