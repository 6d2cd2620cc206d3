"""The optimiser: gold, splits, verifiers, metrics, evaluation, feedback, proposals, the gate, the search.

Pure computation over a predictor and gold items. It must import and test without Redis or RQ installed (a test
checks this), so a user can run it from the CLI on a gold file with nothing else running.
"""
