"""Community analytics service: tracking ingest, rollups, reports and Prometheus metrics."""

__version__ = "0.1.0"
