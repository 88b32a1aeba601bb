"""Password authentication: md5 and SCRAM-SHA-256, server and client sides, no I/O."""
