"""``runcomfy-gateway demo``: the command (:mod:`.command`, light), what it starts
(:mod:`.start`, imported when it runs) and its stored credentials (:mod:`.credentials`)."""
