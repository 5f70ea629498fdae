"""History and invariant checkers: each takes what a run recorded and says ok or why not."""
