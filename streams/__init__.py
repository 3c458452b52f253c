"""Faust app, topics and agents: the streaming topology and nothing else."""
