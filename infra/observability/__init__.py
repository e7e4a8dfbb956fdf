"""What every process shares to be seen working: trace context, log lines and its probe port."""
