"""The suite. Paths every test may need, whatever folder it sits in."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"  # screenshots of the browser tests (git-ignored)
