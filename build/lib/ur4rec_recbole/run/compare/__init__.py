"""Side-by-side runs of several models and seeds (``run_ur4rec.py --compare``)."""
