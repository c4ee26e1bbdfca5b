"""Volume-level work built on the interaction stage: every click of a volume segmented and joined."""
