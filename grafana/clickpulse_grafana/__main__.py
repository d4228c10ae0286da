"""`python -m clickpulse_grafana build` regenerates grafana/dashboards/*.json;
`python -m clickpulse_grafana report [--from now-1h --to now --out reports/]` writes the report."""

import sys

from clickpulse_grafana.dashboards import build

command = sys.argv[1] if len(sys.argv) > 1 else ""
if command == "build":
    for path in build():
        print(f"wrote {path}")
elif command == "report":
    from clickpulse_grafana.report import main

    sys.exit(main(sys.argv[2:]))
else:
    raise SystemExit("usage: python -m clickpulse_grafana build | report [--from --to --out]")
