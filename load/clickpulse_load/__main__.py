import sys

from clickpulse_load.runner import main

sys.exit(main())
