"""slapos: deploy and run services on your own fleet of machines."""

__version__ = "0.1.0"
