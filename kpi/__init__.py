"""The coverage engine: the six sensor indicators from heartbeats and the registry — rollups, point rollups,
values, evidence point by point, live coverage, exports."""
