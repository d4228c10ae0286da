"""`python -m clickpulse_bench drills [RPS]` | `python -m clickpulse_bench bench`."""

import sys

command = sys.argv[1] if len(sys.argv) > 1 else ""
if command == "drills":
    from clickpulse_bench.drills import main

    sys.exit(main(sys.argv[2:]))
if command == "bench":
    from clickpulse_bench.benchmarks import main as bench_main

    sys.exit(bench_main(sys.argv[2:]))
raise SystemExit("usage: python -m clickpulse_bench drills [RPS] | bench [--quick]")
