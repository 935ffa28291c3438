"""Hyperparameter search (``run_ur4rec.py --hyper FILE --tool hyperopt|ray``), chosen on validation only."""
