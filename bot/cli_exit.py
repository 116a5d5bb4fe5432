"""The terminal commands' exit codes, shared by every `canrun` subcommand."""

EXIT_OK, EXIT_UNCHECKED, EXIT_USAGE = 0, 1, 2  # 1: something could not be checked; 2: the user's input
