"""`python -m turnout` runs the CLI."""

from turnout.cli.main import main

main()
