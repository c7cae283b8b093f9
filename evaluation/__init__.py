"""Evaluation: test-set readers, inference through the model's task API, the published protocols,
the report and its plots."""
