"""`python -m rsretrieve` runs the CLI."""

from rsretrieve.cli.app import main

main()
