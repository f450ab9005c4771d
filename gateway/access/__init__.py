"""Who is calling: teams and their keys, admin tokens, credentials and the audit log."""
