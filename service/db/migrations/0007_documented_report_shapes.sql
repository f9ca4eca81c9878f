-- Stored reports in the documented shapes (the seed's report generators): a community report's figures under
-- `metrics`, and the most blocked places of a geo report counted in `attempts`. Reports written before this
-- migration are reshaped in place; the parts they never held (a community's `activity_patterns`, a geo report's
-- `categories`, `location_breakdown` and `trends`) stay absent from them.
UPDATE reports
SET payload = (payload - ARRAY['total_views', 'unique_visitors', 'peak_online_members', 'average_session_duration',
                               'member_retention'])
              || jsonb_build_object('metrics', jsonb_build_object(
                     'total_views', payload -> 'total_views',
                     'unique_visitors', payload -> 'unique_visitors',
                     'peak_online_members', payload -> 'peak_online_members',
                     'average_session_duration', payload -> 'average_session_duration',
                     'member_retention', payload -> 'member_retention'))
WHERE kind = 'community' AND NOT payload ? 'metrics';

UPDATE reports
SET payload = jsonb_set(payload, '{top_blocked_locations}', (
        SELECT coalesce(jsonb_agg((item - 'blocked_attempts') || jsonb_build_object('attempts', item -> 'blocked_attempts')
                                  ORDER BY position), '[]'::jsonb)
        FROM jsonb_array_elements(payload -> 'top_blocked_locations') WITH ORDINALITY AS items(item, position)))
WHERE kind = 'geo_effectiveness' AND jsonb_typeof(payload -> 'top_blocked_locations') = 'array'
  AND payload @? '$.top_blocked_locations[*].blocked_attempts';
