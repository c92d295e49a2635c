"""Balancer: watches load across the fleet; rebalancing and scale advice build on this view."""
