"""How the networks are trained: the loop, the recipes, attention guidance, Algorithm 1, self-supervision."""
