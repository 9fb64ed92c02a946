"""Fault injection: the engine under load while its processes and services fail (make faults)."""
