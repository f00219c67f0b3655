"""Plan: match incidents to known patterns (diagnose), then decide under the safety policy
whether to act (gates, circuit breaker, autonomy levels). Pure logic, no I/O beyond reading
pattern files."""
