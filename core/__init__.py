"""LiLAW Audit's domain: the LiLAW engine, datasets, models, scores and metrics.

Nothing in this package imports FastAPI, Celery or the database.
"""
