-- Requests made to each notification provider, one row per send, for its per-minute limit
-- (`per_minute`). The limit was counted over deliveries by their last `tried_at`, so a delivery
-- tried twice within the window (a timeout, then its retry) was one request to the count and two
-- to the provider, which then refused one. Rows older than the window are pruned as sends are
-- claimed; nothing else reads them.
CREATE TABLE channel_requests (
    channel text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX channel_requests_window ON channel_requests (channel, at);
