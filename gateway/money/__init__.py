"""What things cost and who may spend: pricing and estimates, quotas and budgets."""
