"""The routing model: what the router and the balancer both know about placing work. Pure.

Scoring (``scoring``), persona compatibility (``persona``), learned performance
(``performance``), strategy and mode weights (``policy``), the adaptive strategy's learned weights
(``adaptive``), who may take a task (``eligibility``), and the router's projection (``view``).
The router decides with it (``services/router/decide.py``); the balancer re-scores with it to
judge a move; the routing benchmark replays it. No NATS, no clock, no settings.
"""
