-- Schema 3: leases, so that of the exporters sharing an archive exactly
-- one reads a given source at a time. A holder renews its lease before it
-- expires (Unix milliseconds); another takes it over once it has.
CREATE TABLE leases (
	name    TEXT PRIMARY KEY,
	holder  TEXT NOT NULL,
	expires BIGINT NOT NULL
);
