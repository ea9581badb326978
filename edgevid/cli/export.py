"""``edgevid export`` commands (being built; see the issue tracker)."""

COMMANDS: list = []
