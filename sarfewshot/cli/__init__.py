"""The ``sarfewshot`` command line: one module per subcommand."""
