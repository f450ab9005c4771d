"""The command line: :mod:`.app` registers every command; :mod:`.common` and :mod:`.params`
are what the admin commands share; one module per command group."""
