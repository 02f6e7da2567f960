"""Notifications: events become deliveries to people over their channels, routed by the duty roster."""
