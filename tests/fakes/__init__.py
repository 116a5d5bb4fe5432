"""Real servers on 127.0.0.1 that speak the protocols of the services canrun talks to."""
