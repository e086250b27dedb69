import sys
from pathlib import Path

# The rules Lambda's package root, as Lambda puts it on sys.path (app.py imports routing_core).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "functions" / "rules"))
