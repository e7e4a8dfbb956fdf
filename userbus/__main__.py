"""`python -m userbus` runs the `userbus` command."""

from userbus.cli import main

main()
