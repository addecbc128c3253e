"""Lab integration tests: webhooks to a real local receiver, grid sweeps, live workers."""
