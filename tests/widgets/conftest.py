"""The widget tests share frame helpers from framekit.py beside them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
