"""System metrics: samples of the host, the database, Redis and the ingest stream."""
