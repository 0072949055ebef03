"""The ground every package stands on: settings, database access and migrations, time and periods, the
shared vocabulary, broker connections, progress lines. It imports no other package of citykpi."""
