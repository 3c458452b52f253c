"""An example ShareWise strategy plugin."""

from sharewise_example.roc_momentum import RocMomentum

__all__ = ["RocMomentum"]
