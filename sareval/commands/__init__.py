"""One module per ``sareval`` subcommand, each exposing ``command`` (a click command)."""
