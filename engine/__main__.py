"""`python -m engine` is the `callrouter` command (used where the console script is not on PATH)."""
from engine.cli import main

main()
