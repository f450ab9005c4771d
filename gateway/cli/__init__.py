"""The command line: ``serve``, ``demo``, ``simulator`` and the ``admin`` groups."""
