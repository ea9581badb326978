"""``edgevid train`` commands (being built; see the issue tracker)."""

COMMANDS: list = []
