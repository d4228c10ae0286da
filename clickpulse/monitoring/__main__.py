import sys

from clickpulse.monitoring.cli import main

sys.exit(main())
