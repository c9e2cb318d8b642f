"""Running untrusted candidate code: launchers (isolation levels), the in-child harness, trials."""
