"""`python -m cli`: the same as `lilaw-audit`."""

import sys

from cli.main import main

sys.exit(main())
