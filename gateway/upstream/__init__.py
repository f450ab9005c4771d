"""RunComfy as the gateway sees it: the HTTP client and its breaker, the model catalog, URLs."""
