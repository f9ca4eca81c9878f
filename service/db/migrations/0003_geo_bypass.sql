-- Restriction bypass (DESIGN.md section 6): an allowed access into a community from one country shortly after
-- the same user was blocked from it in another. Set by the ingest worker when it stores the allowed event.
ALTER TABLE geo_access_events ADD COLUMN restriction_bypass boolean NOT NULL DEFAULT false;
