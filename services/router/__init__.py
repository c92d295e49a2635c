"""Router: gives each task to the best agent, never beyond an agent's capacity."""
