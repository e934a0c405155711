"""Does the data or the network cheat: leakage between splits, the shortcut audit, the branch probe."""
