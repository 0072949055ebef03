"""Fleet and province simulators: load for the demo, the tests and the benchmarks."""
