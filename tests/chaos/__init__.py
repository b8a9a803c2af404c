"""Chaos test of the real program: a seeded random schedule of restarts, log
rotations, kills, broken deploys and memory spikes under client load, with the
starter's promises checked all along (see engine.py). Run a soak with
``python -m tests.chaos --duration 3600 --seed N``.
"""
