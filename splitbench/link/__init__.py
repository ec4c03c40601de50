"""Split inference over a real network link: the server, the edge client, link shaping and the planner."""
