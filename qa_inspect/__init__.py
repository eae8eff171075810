"""Quality inspection: rules, scorecards, bulk scoring, sampling, reports and review."""
