"""What every layer uses: the error tree, clocks, JSON helpers, background-task helpers."""
