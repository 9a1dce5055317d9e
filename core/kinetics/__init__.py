"""Kinetics-700: the class subset to study and downloading its clips."""
