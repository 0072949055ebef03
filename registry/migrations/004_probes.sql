-- How to ask a device that publishes nothing whether it works (issue #16): a URL (base/probe_target.py) on the
-- binding, since a device moved to another point usually gets another address there. NULL: not probed.
-- `citykpi probe` runs the probes of the bindings in force and stores each answer as a heartbeat.
ALTER TABLE bindings ADD COLUMN probe text CHECK (length(probe) <= 512);
