"""Recovery: retries failed attempts, requeues work of agents that restarted or died."""
