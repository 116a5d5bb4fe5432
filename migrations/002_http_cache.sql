-- Cached answers of slow or rate-limited APIs (GitHub search, file lookups), keyed by request.
CREATE TABLE http_cache (
    key         TEXT PRIMARY KEY,
    payload     TEXT NOT NULL,
    fetched_at  REAL NOT NULL
);
