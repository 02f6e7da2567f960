-- Requests made to each notification provider, one row per send, for its per-minute limit
-- (`per_minute`). The limit was counted over deliveries by their last `tried_at`, so a delivery
-- tried twice within the window (a timeout, then its retry) was one request to the count and two
-- to the provider, which then refused one. A channel's rows older than the window are pruned
-- when its sends are next claimed (a channel no longer configured keeps its last few, at most
-- its limit); nothing else reads them. A send that fails before any request (an inactive
-- person) is still counted: a little early throttling, never too many requests.
CREATE TABLE channel_requests (
    channel text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX channel_requests_window ON channel_requests (channel, at);
