"""User tools: the demo and the bag player."""
