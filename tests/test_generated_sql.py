"""The committed sql/install.sql and sql/uninstall.sql are what sql/generate.py makes now."""

import subprocess
import sys

from slonybed.bed import REPO


def test_committed_sql_matches_its_sources():
    result = subprocess.run([sys.executable, str(REPO / "sql" / "generate.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
