"""The hardware-in-the-loop bench (scenarios, harness, benchmarks); never imports edgetwin."""
