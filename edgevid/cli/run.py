"""``edgevid run`` commands (being built; see the issue tracker)."""

COMMANDS: list = []
