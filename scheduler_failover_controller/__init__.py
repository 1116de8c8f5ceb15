"""Keeps exactly one Airflow scheduler (or other singleton daemon) running across master nodes."""

__version__ = "0.1.0"
