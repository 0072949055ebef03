-- With TimescaleDB installed and preloaded, heartbeats become a hypertable (7-day chunks: about one
-- lateness window, so late data touches at most two chunks). Without it the table stays plain and
-- the service works the same, only slower on years of data.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND current_setting('shared_preload_libraries') LIKE '%timescaledb%' THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('heartbeats', 'ts', chunk_time_interval => interval '7 days',
                                  create_default_indexes => false, migrate_data => true,
                                  if_not_exists => true);
    END IF;
END
$$;
