"""The benchmark code lives in the repository's `perf/` package, which is not installed: make it importable
however pytest was started."""

import sys

from padrec.server import REPO_ROOT

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
