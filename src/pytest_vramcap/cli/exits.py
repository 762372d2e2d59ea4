"""The ``vramcap`` command's exit codes (the CLI contract, README)."""

EXIT_OK, EXIT_DOES_NOT_FIT, EXIT_BAD_INPUT, EXIT_ENGINE = 0, 1, 2, 3
EXIT_REGRESSED = EXIT_DOES_NOT_FIT
"""``vramcap compare``: the answer is "no" as for a plan that does not fit (DESIGN: 1 = a gate failed)."""
