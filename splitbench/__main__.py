"""``python -m splitbench`` runs the command line."""

from splitbench.cli import main

main()
