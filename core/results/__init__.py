"""Numbers from predictions: metrics with intervals, the tables, the Overview's curves, run comparisons."""
