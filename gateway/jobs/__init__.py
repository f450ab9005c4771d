"""A request's life: admission and dedup, the upstream send, polling, dispatch of queued
jobs, webhooks and budget alerts."""
