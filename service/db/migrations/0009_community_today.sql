-- Today's figures per community so far: what the communities overview lists, kept by the refresh job (see
-- service/storage/today.py). Without them the overview aggregated today's hours of every community and counted
-- today's distinct members from the raw rows at each request (77 ms at 10 M events and 1,000 communities).
CREATE TABLE community_today (
    day          date   NOT NULL,
    community_id bigint NOT NULL,
    events       bigint NOT NULL CHECK (events >= 0),
    views        bigint NOT NULL CHECK (views >= 0),
    joins        bigint NOT NULL CHECK (joins >= 0),
    visitors     bigint NOT NULL CHECK (visitors >= 0),
    PRIMARY KEY (day, community_id)
);

-- The members active in a community today (up to the last refresh): the visitors figure counts them, and the
-- overview leaves them out when it counts the members of the events after that refresh.
CREATE TABLE community_today_members (
    day          date   NOT NULL,
    community_id bigint NOT NULL,
    user_id      bigint NOT NULL,
    PRIMARY KEY (day, community_id, user_id)
);

-- Up to when the two tables above hold today's events (one row).
CREATE TABLE community_today_through (
    single  boolean     PRIMARY KEY DEFAULT true CHECK (single),
    day     date        NOT NULL,
    through timestamptz NOT NULL
);
