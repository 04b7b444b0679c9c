"""Getting events in: loading and validating event logs, and generating demo logs."""
