"""Evaluation outputs people look at: flight plots and videos."""
