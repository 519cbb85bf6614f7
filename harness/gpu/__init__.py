"""The GPU runner check: one prepared command for a lent GPU (`check`), the cases it runs in separate
processes (`cases`), what it compares (`compare`), the Part B recipes it trains (`partb`), and bringing
its results home (`home`). README "GPU runners" gives the commands."""
