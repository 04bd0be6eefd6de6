"""The fault-injection suite: clients, faults, a history checker and its report."""
