"""`python -m secops` runs the CLI, as the `secops` command does (``secops.launch``)."""

from secops.launch import main

main()
