"""`analytics demo`: a simulated community platform whose activity goes through the API's real endpoints.

The simulated world: communities with an audience in one part of the world (a daily rhythm in that time zone,
busier or quieter at weekends, some refusing access from a few countries, regions or cities), and members from
25 countries with their own activity levels, memberships, trips abroad and VPNs. Members visit in sessions:
a geo-restriction decision when they enter (blocked ones may come back through a VPN: a restriction bypass),
then session_start (and a page view), views of sections and of posts, likes, comments, posts, messages,
session_end; new members join and register. Errors the platform logs and system metrics samples come along.

Everything is sent over HTTP with a service token (staff, so it may also queue tasks), as a platform backend
would: batch tracking requests of up to TRACK_MAX_BATCH events, a few at a time from a thread pool, retried
with the same event ids (stored once) on 429/503 and broken connections. History is back-dated with
`timestamp`, at most TRACK_MAX_AGE old (system metrics with `recorded_at`; error logs are stamped by the API
when they arrive). After the history the demo waits for the ingest worker to catch up (the API's
`analytics_stream_backlog` on /metrics), has the rollups refreshed over the back-dated rows (`refresh_rollups`
through /api/tasks, waiting for the run), then queues the snapshot and report tasks, so the dashboards show the
week at once. `--live-minutes` / `--follow` then keep members coming in real time, at `--live-scale` times
their usual rate. The same `--seed` gives the same world and the same history relative to the start time.
"""
