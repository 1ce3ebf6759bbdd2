"""The tables across runs, the screenings and the results page (docs/results.md)."""
