"""The full report: every indicator of the set for a period, sensor and form alike, in the formats officials
use, and the `citykpi report` command."""
