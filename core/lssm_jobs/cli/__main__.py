from __future__ import annotations

import sys

from lssm_jobs.cli import main

sys.exit(main())
