"""Shared helpers for the test suites: real services, network namespaces, test data paths."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
TESTDATA = SHARED / "testdata"
