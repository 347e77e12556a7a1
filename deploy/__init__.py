"""The deployment files; deploy.policy checks them (the rest is not Python to import)."""
