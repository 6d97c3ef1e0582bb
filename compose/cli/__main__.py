"""``python -m compose.cli``: the same app as the ``composerag`` script."""

from compose.cli.main import app

app()
