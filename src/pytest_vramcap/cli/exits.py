"""The ``vramcap`` command's exit codes (the CLI contract, README)."""

EXIT_OK, EXIT_DOES_NOT_FIT, EXIT_BAD_INPUT, EXIT_ENGINE = 0, 1, 2, 3
