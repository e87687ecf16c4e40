"""Processing provider and algorithms (one per engine command)."""
