"""The benchmark: our bootstrap against AWS's `awslambdaric` and a minimal Python loop, under one Runtime API server.

Not part of the test suite. Run it with `./dev bench` (`.venv/bin/python -m bench.run --help` for the options);
`python -m bench.bench_logging` measures the log pipeline alone. Results go to `bench/results/` (gitignored).
"""
