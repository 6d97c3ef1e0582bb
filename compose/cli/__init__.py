"""The ``composerag`` command line: ``compose.cli.main`` holds the app and its commands.

Nothing heavy is imported here, so ``composerag --help`` stays fast."""
