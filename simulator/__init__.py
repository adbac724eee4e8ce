"""Fleet simulator: synthetic trucks and cities with known ground truth."""
