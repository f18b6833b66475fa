"""The `decode` command line: one module per subcommand, loaded only when used."""
