"""`python -m secops` runs the CLI."""

from secops.cli import main

main()
